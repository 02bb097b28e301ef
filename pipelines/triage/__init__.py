"""Workflow 1, triage: labels and a calibrated confidence for a case (the Claude and cascade triagers,
the local model in local/), the route it takes, and the labelled history it learns from."""
