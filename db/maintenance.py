"""Housekeeping deletes: bookkeeping rows that have served their purpose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from db.connection import Connection


@dataclass(frozen=True)
class Pruned:
    job_log: int
    scheduled_runs: int
    slack_events: int


async def prune(conn: Connection, older_than: timedelta) -> Pruned:
    """Delete queue logs, scheduler claims and Slack dedupe keys older than `older_than`."""
    job_log = await conn.fetchval(
        "WITH d AS (DELETE FROM pgqueuer_log WHERE created < now() - $1::interval AND aggregated "
        "RETURNING 1) SELECT count(*) FROM d",
        older_than,
    )
    runs = await conn.fetchval(
        "WITH d AS (DELETE FROM scheduled_runs WHERE enqueued_at < now() - $1::interval "
        "RETURNING 1) SELECT count(*) FROM d",
        older_than,
    )
    events = await conn.fetchval(
        "WITH d AS (DELETE FROM slack_events_seen WHERE received_at < now() - $1::interval "
        "RETURNING 1) SELECT count(*) FROM d",
        older_than,
    )
    return Pruned(job_log, runs, events)
