"""The "Create support case" message shortcut, and the review-card thread listener: a person's
reply under a card becomes an internal note on its case. The shortcut is queued before the ack and
its work (look-up, case, answer in the thread) runs as a job."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from handlers import blocks as kit
from handlers.services import Services
from pipelines.jobs import ShortcutRequest

SHORTCUT_CALLBACK_ID = "create_support_case"

# Replies people write; edits, deletions, joins and bots' posts carry other subtypes.
_NOTE_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


def shortcut_request(body: dict[str, Any]) -> ShortcutRequest:
    """The shortcut's payload, as its job needs it."""
    message = body.get("message", {})
    thread_ts = message.get("thread_ts")
    return ShortcutRequest(
        reporter=body["user"]["id"],
        channel=body["channel"]["id"],
        message_ts=message.get("ts") or body["message_ts"],
        text=message.get("text") or "",
        author=message.get("user"),
        author_bot=message.get("bot_id"),
        thread_ts=thread_ts if thread_ts and thread_ts != message.get("ts") else None,
        response_url=body.get("response_url"),
    )


def case_created_text(short_id: int, reporter: str) -> str:
    who = kit.who(reporter, none="someone")
    return f":white_check_mark: Support case *CX-{short_id}* was created from this message by {who}."


def already_a_case_text(short_id: int) -> str:
    return f"This message is already support case *CX-{short_id}*."


def cannot_post_text(short_id: int) -> str:
    return (f"Support case *CX-{short_id}* was created from this message. Invite the bot to this conversation "
            "to have it answer in the message's thread next time.")


async def on_create_case(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    request = shortcut_request(body)
    # Queued before the ack, so that an acknowledged shortcut is never lost; a redelivery of the
    # same use (same user, same action_ts) is dropped there.
    delivery = body.get("action_ts") or body["trigger_id"]
    await services.home.submit_shortcut(f"shortcut:{request.reporter}:{delivery}", request)
    await ack()


def is_thread_reply(event: dict[str, Any], bot_user_id: str | None = None) -> bool:
    """A person's reply in some thread (not the thread's parent, not a bot, not an edit)."""
    thread_ts = event.get("thread_ts")
    if not thread_ts or thread_ts == event.get("ts") or event.get("subtype") not in _NOTE_SUBTYPES:
        return False
    user = event.get("user")
    return bool(user) and not event.get("bot_id") and user != bot_user_id


async def on_message(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any],
                     services: Services) -> None:
    # Bolt acknowledged the event already; one short transaction stores the note (or finds it is
    # not a card's thread) and a redelivered event (same event_id) is dropped there.
    if not is_thread_reply(event, context.get("bot_user_id")):
        return
    await services.home.add_thread_note(
        body["event_id"], channel=event["channel"], thread_ts=event["thread_ts"], ts=event["ts"],
        user=event["user"], text=event.get("text") or "",
    )


def register(app: AsyncApp) -> None:
    app.message_shortcut(SHORTCUT_CALLBACK_ID)(on_create_case)
    # Every message event lands here, including ones that are not card replies: Bolt runs only the
    # first matching listener, and an unmatched event would be answered 404 and retried by Slack.
    app.event("message")(on_message)
