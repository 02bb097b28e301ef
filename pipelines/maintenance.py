"""Daily housekeeping, so bookkeeping tables stay small."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import structlog

from db import maintenance
from db.pool import transaction

log = structlog.get_logger(__name__)


async def prune(pool: asyncpg.Pool, *, retention: timedelta = timedelta(days=30)) -> maintenance.Pruned:
    async with transaction(pool) as conn:
        pruned = await maintenance.prune(conn, retention)
    log.info("maintenance.pruned", **pruned.__dict__)
    return pruned
