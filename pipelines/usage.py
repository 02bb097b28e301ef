"""Every AI call in llm_usage: Claude, the embedding providers and the local models (at zero cost)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

from db import usage as usage_db
from db.connection import Connection
from pipelines.ports import LLMError, LLMUsage


async def record_usage(
    conn: Connection, calls: Iterable[LLMUsage | None], *, step: str | None = None,
    case_id: UUID | None = None, execution_id: UUID | None = None, batch_job_id: UUID | None = None,
) -> None:
    """Record the calls (None entries, and batch results recorded when their batch was read, are
    skipped); `step` names the pipeline step they served when the caller knows it better than the
    adapter did (an embedding for a search, say)."""
    rows = [usage_db.Call(**(call.model_dump(exclude={"recorded"}) | ({"step": step} if step else {})))
            for call in calls if call and not call.recorded]
    await usage_db.record_calls(conn, rows, case_id=case_id, execution_id=execution_id, batch_job_id=batch_job_id)


@asynccontextmanager
async def failed_calls_recorded(pool: asyncpg.Pool, *, step: str, case_id: UUID | None = None) -> AsyncIterator[None]:
    """A call that fails (LLMError, after the SDK's retries) is recorded too, then the error goes on."""
    try:
        yield
    except LLMError as exc:
        async with pool.acquire() as conn:
            await record_usage(conn, [exc.usage], step=step, case_id=case_id)
        raise
