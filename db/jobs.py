"""The durable job queue (pgqueuer's tables): enqueue inside the caller's transaction, inspect, retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pgqueuer.domain.errors import DuplicateJobError
from pgqueuer.domain.types import JobId
from pgqueuer.queries import Queries

from db.connection import Connection


def _queries(conn: Connection) -> Queries:
    # pgqueuer annotates a plain asyncpg.Connection; the pool's proxy forwards every method it calls.
    return Queries.from_asyncpg_connection(conn)  # type: ignore[arg-type]


async def enqueue(
    conn: Connection,
    entrypoint: str,
    payload: bytes,
    *,
    dedupe_key: str | None = None,
    delay: timedelta | None = None,
    priority: int = 0,
) -> int | None:
    """Queue a job on this connection, so it commits or rolls back with the caller's work.

    With a dedupe key, a job already queued or running under that key makes this a no-op
    (returns None) instead of a second job.
    """
    queries = _queries(conn)
    ids = await queries.enqueue(
        entrypoint,
        payload,
        priority=priority,
        execute_after=delay,
        dedupe_key=dedupe_key,
        on_conflict="skip",
    )
    return ids[0]


async def enqueue_many(conn: Connection, entrypoint: str, payloads: list[bytes]) -> None:
    """Queue several jobs of one kind in one statement, on the caller's transaction."""
    if payloads:
        await _queries(conn).enqueue([entrypoint] * len(payloads), list(payloads), [0] * len(payloads))


_CLAIM_PERIOD = """
INSERT INTO scheduled_runs (job_name, period_key) VALUES ($1, $2)
ON CONFLICT DO NOTHING
RETURNING job_name
"""


async def enqueue_for_period(
    conn: Connection, entrypoint: str, period_key: str, payload: bytes
) -> bool:
    """Queue a scheduled job once per period, however many schedulers tick; True if this one did."""
    async with conn.transaction():
        if await conn.fetchval(_CLAIM_PERIOD, entrypoint, period_key) is None:
            return False
        await enqueue(conn, entrypoint, payload, dedupe_key=f"{entrypoint}:{period_key}")
        return True


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    picked: int
    failed: int


_DEPTH = """
SELECT
    count(*) FILTER (WHERE status = 'queued') AS queued,
    count(*) FILTER (WHERE status = 'picked') AS picked,
    count(*) FILTER (WHERE status = 'failed') AS failed
FROM pgqueuer
"""


async def depth(conn: Connection) -> QueueDepth:
    row = await conn.fetchrow(_DEPTH)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return QueueDepth(row["queued"], row["picked"], row["failed"])


@dataclass(frozen=True)
class QueuedJob:
    id: int
    entrypoint: str
    status: str
    attempts: int
    created: datetime
    execute_after: datetime
    dedupe_key: str | None
    last_error: str | None


# The newest traceback of each job comes from pgqueuer's log, where its executor records it.
_LIST = """
SELECT q.id, q.entrypoint, q.status::text AS status, q.attempts, q.created, q.execute_after,
       q.dedupe_key,
       (SELECT l.traceback->>'exception_message' FROM pgqueuer_log l
         WHERE l.job_id = q.id AND l.traceback IS NOT NULL
         ORDER BY l.created DESC LIMIT 1) AS last_error
FROM pgqueuer q
WHERE ($1::text IS NULL OR q.status::text = $1)
ORDER BY q.created DESC
LIMIT $2
"""


async def list_jobs(
    conn: Connection, *, status: str | None = None, limit: int = 50
) -> list[QueuedJob]:
    return [QueuedJob(**dict(row)) for row in await conn.fetch(_LIST, status, limit)]


class JobNotFailed(LookupError):
    pass


async def retry_failed(conn: Connection, job_id: int) -> None:
    """Put a held (failed) job back in the queue with a fresh attempt budget."""
    status = await conn.fetchval("SELECT status::text FROM pgqueuer WHERE id = $1", job_id)
    if status != "failed":
        raise JobNotFailed(
            f"job {job_id} is not a failed job" if status else f"there is no job {job_id}"
        )
    try:
        await _queries(conn).requeue_jobs([JobId(job_id)])
    except DuplicateJobError:
        raise JobNotFailed(f"job {job_id} has a twin already queued under its dedupe key") from None
