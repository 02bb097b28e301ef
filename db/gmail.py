"""Gmail sync bookkeeping: where each mailbox's incremental sync stands, and which messages are done."""

from __future__ import annotations

from uuid import UUID

from db.connection import Connection


async def history_id(conn: Connection, mailbox: str) -> int | None:
    value: int | None = await conn.fetchval("SELECT history_id FROM gmail_sync_state WHERE mailbox = $1", mailbox)
    return value


async def save_history_id(conn: Connection, mailbox: str, value: int, *, full_sync: bool) -> None:
    # GREATEST: two syncs finishing out of order must not move the cursor backwards.
    await conn.execute(
        """
        INSERT INTO gmail_sync_state (mailbox, history_id, last_full_sync_at)
        VALUES ($1, $2, CASE WHEN $3 THEN now() END)
        ON CONFLICT (mailbox) DO UPDATE SET
            history_id = GREATEST(gmail_sync_state.history_id, EXCLUDED.history_id),
            last_full_sync_at = coalesce(EXCLUDED.last_full_sync_at, gmail_sync_state.last_full_sync_at),
            updated_at = now()
        """,
        mailbox,
        value,
        full_sync,
    )


async def unseen(conn: Connection, message_ids: list[str]) -> list[str]:
    """The ids not processed yet, in the given order."""
    seen = {
        r["gmail_message_id"]
        for r in await conn.fetch(
            "SELECT gmail_message_id FROM gmail_messages_seen WHERE gmail_message_id = ANY($1::text[])", message_ids
        )
    }
    return [m for m in message_ids if m not in seen]


async def mark_seen(
    conn: Connection,
    message_id: str,
    *,
    mailbox: str,
    thread_id: str | None,
    case_id: UUID | None,
    outcome: str,
    reason: str | None,
) -> bool:
    """Record a processed message; False if another sync recorded it first."""
    return (
        await conn.fetchval(
            "INSERT INTO gmail_messages_seen (gmail_message_id, mailbox, thread_id, case_id, outcome, reason) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            message_id, mailbox, thread_id, case_id, outcome, reason,
        )
        is not None
    )
