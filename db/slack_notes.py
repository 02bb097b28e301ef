"""Slack's side of a case that is not the review card: internal notes from a card's thread, the
acknowledgement of a case made from a Slack message, and the numbers the App Home shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


async def case_for_card_thread(conn: asyncpg.Connection, channel: str, thread_ts: str) -> UUID | None:
    """The case whose review card is the message `thread_ts` in `channel`, if any."""
    return await conn.fetchval(
        "SELECT case_id FROM slack_messages "
        "WHERE channel_id = $1 AND ts = $2 AND purpose = 'review_card' AND case_id IS NOT NULL",
        channel, thread_ts,
    )


async def add_note(
    conn: asyncpg.Connection, case_id: UUID, *, actor_type: str, actor_id: str, message: str,
    external_message_id: str, metadata: dict[str, Any] | None = None,
) -> bool:
    """An internal note on the case; False if a note with that external id is already there."""
    inserted = await conn.fetchval(
        "INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, "
        "external_message_id, metadata, created_at) "
        "VALUES ($1, $2, $3, 'note', $4, $5, $6::jsonb, clock_timestamp()) "
        "ON CONFLICT DO NOTHING RETURNING interaction_id",
        case_id, actor_type, actor_id, message, external_message_id, json.dumps(metadata or {}),
    )
    return inserted is not None


@dataclass(frozen=True)
class QueueFacts:
    queue_size: int
    oldest_short_id: int | None
    oldest_subject: str | None
    oldest_waiting_since: datetime | None


@dataclass(frozen=True)
class DayCounts:
    created: int
    replied: int  # cases that reached `replied`
    auto_sent: int  # replies sent with no reviewer's approval
    sent_to_review: int
    escalated: int


@dataclass(frozen=True)
class OwnedCase:
    short_id: int
    status: str
    subject: str | None


# A case waits from its latest move into awaiting_review (it may have been there before); the
# creation time stands in for a case that has no recorded move.
_QUEUE = """
WITH queue AS (
    SELECT c.short_id, c.subject,
           coalesce((SELECT max(i.created_at) FROM case_interactions i
                     WHERE i.case_id = c.case_id AND i.interaction_type = 'status_change'
                       AND i.to_status = 'awaiting_review'), c.created_at) AS waiting_since
    FROM cases c
    WHERE c.status = 'awaiting_review'
), oldest AS (
    SELECT short_id, subject, waiting_since FROM queue ORDER BY waiting_since, short_id LIMIT 1
)
SELECT (SELECT count(*) FROM queue) AS queue_size,
       (SELECT short_id FROM oldest) AS oldest_short_id,
       (SELECT subject FROM oldest) AS oldest_subject,
       (SELECT waiting_since FROM oldest) AS oldest_waiting_since
"""


async def queue_facts(conn: asyncpg.Connection) -> QueueFacts:
    return QueueFacts(**dict(await conn.fetchrow(_QUEUE)))


# Moves are counted per case, so a case bounced twice through review counts once.
_DAY = """
SELECT
    (SELECT count(*) FROM cases WHERE created_at >= $1) AS created,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'replied') AS replied,
    (SELECT count(DISTINCT case_id) FROM reply_outbox
      WHERE status = 'sent' AND approved_by IS NULL AND sent_at >= $1) AS auto_sent,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'awaiting_review') AS sent_to_review,
    count(DISTINCT case_id) FILTER (WHERE to_status = 'escalated') AS escalated
FROM case_interactions
WHERE interaction_type = 'status_change' AND created_at >= $1
"""


async def day_counts(conn: asyncpg.Connection, since: datetime) -> DayCounts:
    return DayCounts(**dict(await conn.fetchrow(_DAY, since)))


# Resolved and closed cases are done with; the rest still need their owner.
_OWNED = """
SELECT short_id, status, subject, count(*) OVER () AS total
FROM cases
WHERE owner_slack_user_id = $1 AND status NOT IN ('resolved', 'closed')
ORDER BY updated_at DESC, short_id DESC
LIMIT $2
"""


async def owned_cases(conn: asyncpg.Connection, user_id: str, limit: int) -> tuple[list[OwnedCase], int]:
    """The user's open cases, most recently touched first, and how many they have in all."""
    rows = await conn.fetch(_OWNED, user_id, limit)
    total = rows[0]["total"] if rows else 0
    return [OwnedCase(r["short_id"], r["status"], r["subject"]) for r in rows], total
