"""Workflow 1, intake: a request from a webhook, Gmail, a file or a Slack message becomes a committed
case with its triage job, before any AI sees it; an email in a known thread joins its case."""
