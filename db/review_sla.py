"""The review SLA's claims: a pending review's reminder and its timeout, each marked taken by the
statement that selects it, so that however many schedulers run, one of them gets it.

Each claim takes one review and is meant to run in the caller's transaction: the caller posts to
Slack while the row stays locked and commits after the post, so a failed post rolls the claim back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from db.connection import Connection


class NoticeKind(StrEnum):
    REMINDER = "reminder"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class SlaNotice:
    """One claimed reminder or timeout, with what its Slack post shows."""

    kind: NoticeKind
    review_id: UUID
    case_id: UUID
    short_id: int
    priority: str | None
    subject: str | None  # the customer's words: untrusted
    owner: str | None  # the Slack user who took the case, if someone did
    card_channel: str
    card_ts: str
    due_at: datetime


# Only a review still waiting on a reviewer counts: a case that left review (sent, escalated,
# closed) keeps no SLA even if its review row was never closed. A card not yet posted has no thread
# to remind in and nothing to link to, so its review waits until it has one.
# SKIP LOCKED: a review a reviewer is deciding right now, or another scheduler is posting about,
# is left alone; the row re-checks its status once locked, so a decision committed meanwhile wins.
_CLAIM_REMINDER = """
WITH due AS (
    SELECT r.review_id
    FROM review_queue r
    JOIN cases c USING (case_id)
    JOIN slack_messages m ON m.case_id = r.case_id AND m.purpose = 'review_card'
    WHERE r.status = 'pending' AND r.reminder_sent_at IS NULL
      AND r.due_at - $2::interval <= $1 AND r.due_at > $1
      AND c.status IN ('awaiting_review', 'human_owned')
      AND r.review_id <> ALL($3::uuid[])
    ORDER BY r.due_at
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE review_queue r SET reminder_sent_at = $1, updated_at = now()
FROM due, cases c, slack_messages m
WHERE r.review_id = due.review_id AND r.reminder_sent_at IS NULL
  AND c.case_id = r.case_id AND m.case_id = r.case_id AND m.purpose = 'review_card'
RETURNING r.review_id, r.case_id, c.short_id, c.priority, c.subject, c.owner_slack_user_id AS owner,
          m.channel_id AS card_channel, m.ts AS card_ts, r.due_at
"""

# The timeout also writes the case's timeline, whose foreign key share-locks the case row. Taking
# that lock here, with SKIP LOCKED, means this transaction never waits for a lock once it holds
# the review row: a reviewer's decision (case row first, then the review) cannot deadlock with it.
_CLAIM_TIMEOUT = """
WITH due AS (
    SELECT r.review_id
    FROM review_queue r
    JOIN cases c USING (case_id)
    JOIN slack_messages m ON m.case_id = r.case_id AND m.purpose = 'review_card'
    WHERE r.status = 'pending' AND r.escalated_at IS NULL AND r.due_at <= $1
      AND c.status IN ('awaiting_review', 'human_owned')
      AND r.review_id <> ALL($2::uuid[])
    ORDER BY r.due_at
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
    FOR KEY SHARE OF c SKIP LOCKED
)
UPDATE review_queue r SET escalated_at = $1, updated_at = now()
FROM due, cases c, slack_messages m
WHERE r.review_id = due.review_id AND r.escalated_at IS NULL
  AND c.case_id = r.case_id AND m.case_id = r.case_id AND m.purpose = 'review_card'
RETURNING r.review_id, r.case_id, c.short_id, c.priority, c.subject, c.owner_slack_user_id AS owner,
          m.channel_id AS card_channel, m.ts AS card_ts, r.due_at
"""

_TIMEOUT_NOTE = """
INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, metadata)
VALUES ($1, 'system', 'review_sla', 'note', $2,
        jsonb_build_object('event', 'review_timeout', 'review_id', $3::uuid, 'due_at', $4::timestamptz))
"""


async def claim_reminder(
    conn: Connection, now: datetime, lead: timedelta, skip: list[UUID]
) -> SlaNotice | None:
    """The next review whose reminder is due (due within `lead`, not yet due), marked reminded.
    `skip`: reviews this run already failed to post about. Call in a transaction."""
    row = await conn.fetchrow(_CLAIM_REMINDER, now, lead, skip)
    return SlaNotice(kind=NoticeKind.REMINDER, **dict(row)) if row else None


async def claim_timeout(conn: Connection, now: datetime, skip: list[UUID]) -> SlaNotice | None:
    """The next review past its due time not yet escalated, marked escalated. Call in a transaction."""
    row = await conn.fetchrow(_CLAIM_TIMEOUT, now, skip)
    return SlaNotice(kind=NoticeKind.TIMEOUT, **dict(row)) if row else None


async def record_timeout(conn: Connection, notice: SlaNotice, message: str) -> None:
    """The timeout on the case's timeline; the claim already share-locked the case row."""
    await conn.execute(_TIMEOUT_NOTE, notice.case_id, message, notice.review_id, notice.due_at)
