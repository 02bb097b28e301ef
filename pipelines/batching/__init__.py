"""Bulk model calls as Anthropic Message Batches: half the price, answered within hours, for work no
one waits on (the daily article drafts, summaries of alerts that are not urgent).

A step runs as usual with a `BatchQueue` for its model: its call is stored (batch_requests) and the
step stops (`Deferred`). Every minute `run_batches` sends what waits as one batch and reads the
batches that ended; each answer runs the step's job again with a `BatchAnswer`, which hands the step
the stored answer, so the step's own code validates, redacts and saves it as after a direct call."""
