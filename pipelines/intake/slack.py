"""Cases from Slack: a message turned into a case by the "Create support case" shortcut (once per
message, however often it is used), and a review card's thread kept on its case as internal notes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from db import intake as intake_db
from db import slack_notes as notes_db
from db.pool import transaction
from db.review import first_delivery
from pipelines.intake.webhook import stored_outcome
from pipelines.jobs import JobName
from pipelines.models import Intake

# The shortcut's job; the wiring names it JobName.SLACK_CASE with this same value.

# Slack user ids are upper case; the customers table wants lower-case addresses, and `.invalid`
# (RFC 2606) can never be delivered to.
PLACEHOLDER_DOMAIN = "slack.invalid"
_SUBJECT_MAX = 120
_EMPTY_MESSAGE = "(a Slack message with no text)"
_EMPTY_REPLY = "(a reply with no text)"


@dataclass(frozen=True)
class SlackMessage:
    """A Slack message to turn into a case, with its author already looked up."""

    channel: str
    ts: str
    text: str
    author_id: str  # the Slack user (or bot) id of whoever wrote the message
    reporter: str  # the Slack user who used the shortcut
    author_email: str | None = None
    author_name: str | None = None
    thread_ts: str | None = None  # set when the message is itself a reply in a thread


@dataclass(frozen=True)
class ThreadNote:
    """A person's reply in some message's thread."""

    channel: str
    thread_ts: str
    ts: str
    user: str
    text: str


def external_id(channel: str, ts: str) -> str:
    """A Slack message's key among cases: (channel, ts) names one message in a workspace."""
    return f"slack:{channel}:{ts}"


def placeholder_email(slack_id: str) -> str:
    return f"{slack_id.lower()}@{PLACEHOLDER_DOMAIN}"


def subject_of(text: str) -> str | None:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        return None
    return first if len(first) <= _SUBJECT_MAX else first[: _SUBJECT_MAX - 1].rstrip() + "…"



async def create_case(pool: asyncpg.Pool, message: SlackMessage) -> Intake:
    """The message's case, with its triage job; a message already made a case gets that case back."""
    text = message.text.strip()
    async with pool.acquire() as conn:
        stored = await intake_db.create_case(
            conn,
            customer_email=message.author_email or placeholder_email(message.author_id),
            customer_name=message.author_name,
            channel="slack",
            subject=subject_of(text),
            description=text or _EMPTY_MESSAGE,
            interaction_type="slack_in",
            external_id=external_id(message.channel, message.ts),
            metadata={"slack": {"channel": message.channel, "ts": message.ts, "thread_ts": message.thread_ts,
                                "author": message.author_id, "reporter": message.reporter}},
            triage_entrypoint=JobName.TRIAGE,
        )
    return stored_outcome(stored)


async def acknowledge_once(
    pool: asyncpg.Pool, case_id: UUID, message: SlackMessage, post: Callable[[], Awaitable[object]]
) -> bool:
    """Run `post` (the answer in the message's thread) for the first shortcut on a message only;
    False when an earlier one already answered.

    The claim and the post share a transaction: a concurrent job on the same message waits on the
    claim's unique key until this one commits (then stays quiet) or rolls back after a failed post
    (then answers itself). A crash between the post and the commit answers twice; never not at all.
    """
    async with transaction(pool) as conn:
        claimed = await notes_db.add_note(
            conn, case_id, actor_type="system", actor_id="slack",
            message=f"Case created in Slack by {message.reporter}; its id was posted in the message's thread.",
            external_message_id=f"slack-ack:{message.channel}:{message.ts}",
            metadata={"slack": {"reporter": message.reporter}},
        )
        if not claimed:
            return False
        await post()
    return True


async def store_thread_note(pool: asyncpg.Pool, delivery_id: str, note: ThreadNote) -> UUID | None:
    """Keep a reply in a review card's thread as an internal note on the card's case. Returns the
    case, or None for a reply in any other thread or one already stored."""
    async with transaction(pool) as conn:
        case_id = await notes_db.case_for_card_thread(conn, note.channel, note.thread_ts)
        # Deliveries are recorded only for card threads, so chatter elsewhere leaves no rows.
        if case_id is None or not await first_delivery(conn, delivery_id):
            return None
        stored = await notes_db.add_note(
            conn, case_id, actor_type="reviewer", actor_id=note.user, message=note.text.strip() or _EMPTY_REPLY,
            external_message_id=external_id(note.channel, note.ts),
            metadata={"slack": {"channel": note.channel, "ts": note.ts, "thread_ts": note.thread_ts}},
        )
    return case_id if stored else None
