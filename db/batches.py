"""Message Batches: the calls waiting in one (batch_requests) and the batches sent (batch_jobs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class WaitingCall:
    request_id: UUID
    step: str
    subject_id: UUID
    resume_job: str
    request: str  # LLMRequest as JSON
    status: str
    attempts: int


@dataclass(frozen=True)
class OpenBatch:
    batch_job_id: UUID
    batch_id: str | None  # None: the row was written but the provider's answer to the create never stored
    status: str
    request_count: int
    submitted_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Answer:
    request: str  # LLMRequest as JSON
    answer: str | None  # the tool call's fields as JSON
    usage: str | None  # LLMUsage as JSON


async def queue(conn: Connection, *, step: str, subject_id: UUID, resume_job: str, request: str) -> bool:
    """Queue a call for the next batch; False when the same step for the same subject already waits."""
    return await conn.fetchval(
        """
        INSERT INTO batch_requests (step, subject_id, resume_job, request) VALUES ($1, $2, $3, $4::jsonb)
        ON CONFLICT (step, subject_id) WHERE status IN ('queued', 'sent') DO NOTHING
        RETURNING true
        """,
        step, subject_id, resume_job, request,
    ) is not None


_CALL_COLUMNS = "request_id, step, subject_id, resume_job, request::text AS request, status, attempts"


async def take_queued(conn: Connection, limit: int, *, now: datetime, expires_at: datetime) -> tuple[UUID, list[WaitingCall]] | None:
    """In the caller's transaction: a new batch_jobs row (no provider id yet) holding up to `limit` queued
    calls, oldest first, now sent. None when nothing waits."""
    rows = await conn.fetch(
        f"SELECT {_CALL_COLUMNS} FROM batch_requests WHERE status = 'queued' "
        "ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    if not rows:
        return None
    steps = sorted({r["step"] for r in rows})
    batch_job_id = await conn.fetchval(
        """
        INSERT INTO batch_jobs (provider, workflow_name, workflow_stage, status, request_count, submitted_at,
                                expires_at)
        VALUES ('anthropic', 'message_batch', $1, 'submitted', $2, $3, $4)
        RETURNING batch_job_id
        """,
        ",".join(steps), len(rows), now, expires_at,
    )
    await conn.execute(
        """
        UPDATE batch_requests SET status = 'sent', batch_job_id = $2, attempts = attempts + 1, updated_at = now()
        WHERE request_id = ANY($1::uuid[])
        """,
        [r["request_id"] for r in rows], batch_job_id,
    )
    return batch_job_id, [WaitingCall(**{**dict(r), "status": "sent", "attempts": r["attempts"] + 1}) for r in rows]


async def sent(conn: Connection, batch_job_id: UUID, batch_id: str) -> None:
    """The provider has the batch."""
    await conn.execute(
        "UPDATE batch_jobs SET batch_id = $2, status = 'in_progress', updated_at = now() WHERE batch_job_id = $1",
        batch_job_id, batch_id,
    )


async def open_batches(conn: Connection) -> list[OpenBatch]:
    """Batches whose results have not been read, oldest first."""
    rows = await conn.fetch(
        """
        SELECT batch_job_id, batch_id, status, request_count, submitted_at, expires_at FROM batch_jobs
        WHERE completed_at IS NULL AND provider = 'anthropic' AND status IN ('submitted', 'in_progress', 'timed_out')
        ORDER BY submitted_at
        """
    )
    return [OpenBatch(**dict(r)) for r in rows]


async def known_batch_ids(conn: Connection, batch_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch("SELECT batch_id FROM batch_jobs WHERE batch_id = ANY($1::text[])", list(batch_ids))
    return {r["batch_id"] for r in rows}


async def calls_of(conn: Connection, batch_job_id: UUID) -> list[WaitingCall]:
    """The batch's calls, locked for the caller's transaction."""
    rows = await conn.fetch(
        f"SELECT {_CALL_COLUMNS} FROM batch_requests WHERE batch_job_id = $1 ORDER BY created_at FOR UPDATE",
        batch_job_id,
    )
    return [WaitingCall(**dict(r)) for r in rows]


async def mark(
    conn: Connection, request_ids: Sequence[UUID], status: str, *, error: str | None = None,
) -> None:
    """queued again (detached from its batch), or synchronous."""
    if request_ids:
        await conn.execute(
            """
            UPDATE batch_requests SET status = $2, error = coalesce($3, error), updated_at = now(),
                   batch_job_id = CASE WHEN $2 = 'queued' THEN NULL ELSE batch_job_id END
            WHERE request_id = ANY($1::uuid[])
            """,
            list(request_ids), status, error,
        )


async def answered(conn: Connection, request_id: UUID, answer: str, usage: str) -> None:
    await conn.execute(
        """
        UPDATE batch_requests SET status = 'answered', answer = $2::jsonb, usage = $3::jsonb, updated_at = now()
        WHERE request_id = $1
        """,
        request_id, answer, usage,
    )


async def answer(conn: Connection, request_id: UUID) -> Answer | None:
    row = await conn.fetchrow(
        "SELECT request::text AS request, answer::text AS answer, usage::text AS usage "
        "FROM batch_requests WHERE request_id = $1 AND status = 'answered'",
        request_id,
    )
    return Answer(**dict(row)) if row else None


async def finish(conn: Connection, batch_job_id: UUID, *, status: str, counts: dict[str, int],
                 error: str | None = None) -> None:
    """The batch's results are read (or it never reached the provider: `status` failed)."""
    await conn.execute(
        """
        UPDATE batch_jobs SET status = $2, succeeded_count = $3, failed_count = $4, result_payload = $5::jsonb,
               error_message = $6, completed_at = now(), last_polled_at = now(), updated_at = now()
        WHERE batch_job_id = $1
        """,
        batch_job_id, status, counts.get("succeeded", 0), sum(v for k, v in counts.items() if k != "succeeded"),
        json.dumps(counts), error,
    )


async def timed_out(conn: Connection, batch_job_id: UUID) -> None:
    await conn.execute(
        "UPDATE batch_jobs SET status = 'timed_out', last_polled_at = now(), updated_at = now() "
        "WHERE batch_job_id = $1",
        batch_job_id,
    )


async def polled(conn: Connection, batch_job_id: UUID) -> None:
    await conn.execute("UPDATE batch_jobs SET last_polled_at = now() WHERE batch_job_id = $1", batch_job_id)
