"""Where each day's report went: one row per (day, destination), so it goes once however often
its jobs run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from db.connection import Connection


@dataclass(frozen=True)
class Delivery:
    metric_date: date
    destination: str  # 'slack' or 'email'
    recipient: str
    status: str  # pending, sending, sent, failed
    attempts: int
    message_id: str | None
    provider_id: str | None
    channel_id: str | None
    file_id: str | None
    sent_at: datetime | None


async def create(conn: Connection, day: date, destination: str, recipient: str, message_id: str | None) -> bool:
    """The day's delivery to `destination`, made once; False if it already existed."""
    made = await conn.fetchval(
        "INSERT INTO report_deliveries (metric_date, destination, recipient, message_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        day, destination, recipient, message_id,
    )
    return made is not None


_COLUMNS = "metric_date, destination, recipient, status, attempts, message_id, provider_id, channel_id, file_id, sent_at"


async def get(conn: Connection, day: date, destination: str) -> Delivery | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM report_deliveries WHERE metric_date = $1 AND destination = $2", day, destination
    )
    return Delivery(**dict(row)) if row else None


async def mark_sending(conn: Connection, day: date, destination: str) -> None:
    """Committed before the provider is called: a row found in `sending` later may have been delivered."""
    await conn.execute(
        "UPDATE report_deliveries SET status = 'sending', attempts = attempts + 1, updated_at = now() "
        "WHERE metric_date = $1 AND destination = $2",
        day, destination,
    )


async def set_slack_message(conn: Connection, day: date, channel_id: str, ts: str) -> None:
    """The report's Slack message is posted: a retry uploads the chart without posting again."""
    await conn.execute(
        "UPDATE report_deliveries SET channel_id = $2, provider_id = $3, updated_at = now() "
        "WHERE metric_date = $1 AND destination = 'slack'",
        day, channel_id, ts,
    )


async def mark_sent(conn: Connection, day: date, destination: str, provider_id: str | None,
                    file_id: str | None = None) -> None:
    await conn.execute(
        "UPDATE report_deliveries SET status = 'sent', provider_id = coalesce($3, provider_id), "
        "file_id = coalesce($4, file_id), sent_at = now(), last_error = NULL, updated_at = now() "
        "WHERE metric_date = $1 AND destination = $2",
        day, destination, provider_id, file_id,
    )


async def mark_error(conn: Connection, day: date, destination: str, error: str) -> None:
    await conn.execute(
        "UPDATE report_deliveries SET last_error = $3, updated_at = now() WHERE metric_date = $1 AND destination = $2",
        day, destination, error[:1000],
    )
