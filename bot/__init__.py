"""The composition root: settings, the collaborators built from them (deps.py, with the AI parts in
ai.py and the SDK clients in clients.py), the job table (jobs.py) and `cx run` (process.py), which
starts the roles. Everything else in bot/ sits in one package per job:

- cli/       the `cx` commands
- runtime/   the database (embedded or not), the job worker, the scheduler, logs and metrics
- web/       the aiohttp server: /healthz, /metrics and the signed webhooks
- slack/     the Slack runtime: the Bolt app, the Web API chores the services share
- services/  what the Slack listeners and the Slack jobs call, over the database, the pipelines and Slack
"""
