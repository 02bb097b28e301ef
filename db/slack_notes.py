"""Slack's side of a case that is not the review card: internal notes from a card's thread, and the
acknowledgement of a case made from a Slack message."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from db.connection import Connection


async def case_for_card_thread(conn: Connection, channel: str, thread_ts: str) -> UUID | None:
    """The case whose review card is the message `thread_ts` in `channel`, if any."""
    case_id: UUID | None = await conn.fetchval(
        "SELECT case_id FROM slack_messages "
        "WHERE channel_id = $1 AND ts = $2 AND purpose = 'review_card' AND case_id IS NOT NULL",
        channel, thread_ts,
    )
    return case_id


async def add_note(
    conn: Connection, case_id: UUID, *, actor_type: str, actor_id: str, message: str,
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
