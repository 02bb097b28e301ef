"""The daily retention pass: each kind of record older than its window is deleted, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import structlog

from db import retention
from db.retention import Kind

log = structlog.get_logger(__name__)

BATCH_ROWS = 5000


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind is kept."""

    search_log: timedelta
    llm_usage: timedelta
    executions: timedelta
    slack_events: timedelta
    job_log: timedelta

    def windows(self) -> dict[Kind, timedelta]:
        return {
            Kind.SEARCH_LOG: self.search_log,
            Kind.LLM_USAGE: self.llm_usage,
            Kind.EXECUTIONS: self.executions,
            Kind.SLACK_EVENTS: self.slack_events,
            Kind.JOB_LOG: self.job_log,
            Kind.SCHEDULED_RUNS: self.job_log,
        }


async def apply_retention(pool: asyncpg.Pool, policy: RetentionPolicy, *, batch: int = BATCH_ROWS) -> dict[Kind, int]:
    """Delete what each window no longer covers; rows deleted per kind. Each batch commits on its own,
    so a pass stopped halfway has kept what it did and the next one carries on."""
    async with pool.acquire() as conn:
        started = await retention.now(conn)
        deleted = {kind: 0 for kind in Kind}
        for kind, window in policy.windows().items():
            while True:
                count = await retention.delete_batch(conn, kind, started - window, batch)
                deleted[kind] += count
                if count < batch:
                    break
    log.info("retention.applied", **{kind.value: n for kind, n in deleted.items()})
    return deleted
