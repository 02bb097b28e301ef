"""The workflow_executions bookkeeping every step shares: a run that raises is recorded as an error
(with the exception's type and message) before the error goes on to the job's retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

from db import executions

ERROR_CHARS = 1000


@asynccontextmanager
async def failures_recorded(pool: asyncpg.Pool, execution_id: UUID) -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        async with pool.acquire() as conn:
            await executions.finish(conn, execution_id, "error", error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
        raise
