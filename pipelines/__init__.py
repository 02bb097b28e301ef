"""The domain steps, grouped by workflow, each a plain async function over explicit inputs:
intake/, triage/ (the local model in triage/local/), kb/, drafting/, review/, replies/; detection/
and learning/ are next. ports.py holds every interface the steps depend on, jobs.py every job's
name and payload, adapters/ the real implementations of the ports."""
