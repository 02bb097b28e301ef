"""The one error funnel (log with an id, show the user only that id, never a traceback), and the
Slack errors that mean a post can never land where it was aimed."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp

log = structlog.get_logger(__name__)

# Slack refuses the post however often it is retried: the bot is not in the conversation, the
# conversation is gone or archived, or a workspace setting forbids it. A person has to act (invite
# the bot, answer elsewhere); a retry would only repeat the refusal.
CANNOT_POST = frozenset({
    "not_in_channel", "channel_not_found", "is_archived", "thread_not_found", "cannot_reply_to_message",
    "restricted_action", "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "ekm_access_denied", "no_permission", "cant_post_in_channel",
})


def unexpected_error_text(error_id: str) -> str:
    return f":warning: Something went wrong on our side. If it keeps happening, quote error id `{error_id}`."


async def handle_error(error: Exception, body: dict[str, Any], respond: Any, logger: Any) -> None:
    error_id = uuid.uuid4().hex[:10]
    log.error(
        "slack.listener_failed",
        error_id=error_id,
        error=repr(error),
        payload_type=body.get("type"),
        exc_info=error,
    )
    if respond is not None and body.get("response_url"):
        await respond(text=unexpected_error_text(error_id), response_type="ephemeral", replace_original=False)


def register(app: AsyncApp) -> None:
    app.error(handle_error)
