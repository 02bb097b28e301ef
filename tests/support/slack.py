"""Who reviews in the fake Slack: the reviewer group the shared `slack` fixture fills."""

REVIEWERS = "S0REVIEWERS"
