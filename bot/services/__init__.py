"""The service layer: what the Slack listeners (through the Protocols of handlers/services.py) and
the Slack jobs call, over the database, the pipelines and the Slack client. One class per surface:
review cards, App Home and the shortcut, slash commands, the review SLA, urgent alerts."""
