"""Workflow 2, drafting: a cited reply from the retrieved articles (Claude, or an extractive draft
offline) and the auto-send policy that decides whether it goes out without a person."""
