"""Slack UI: listeners and pure Block Kit builders. No SQL here; work goes through pipelines and jobs."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from handlers import commands, errors, home, review_actions, shortcut


def register(app: AsyncApp) -> None:
    errors.register(app)
    review_actions.register(app)
    home.register(app)
    commands.register(app)
    # Last: its message listener takes every message event (see handlers.shortcut).
    shortcut.register(app)
