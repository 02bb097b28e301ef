"""Workflow 4, the review hub: a reviewer's decisions (approve, edit, reject, escalate, take), the
review SLA, a critical case's alert, and the lookups `/case` and App Home show."""
