"""Quiet resolution: a replied case resolves once its customer has been silent for RESOLVE_AFTER_HOURS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import structlog

from db import lifecycle as lifecycle_db
from db.cases import ActorType
from db.pool import transaction
from pipelines.jobs import JobName
from pipelines.queue import queue_case_job

log = structlog.get_logger(__name__)

ACTOR = "lifecycle"
BATCH = 200  # cases per transaction: row locks are held briefly, and a crash loses little


@dataclass(frozen=True)
class Resolved:
    case_id: UUID
    resolution_type: str


async def resolve_quiet(pool: asyncpg.Pool, *, now: datetime, silence: timedelta,
                        batch: int = BATCH) -> list[Resolved]:
    """Resolve every replied case whose last reply went out at least `silence` before `now` with
    no customer message since. Each case moves once: a case is locked while it is resolved and
    only `replied` ones are picked, so a second run, or another replica's, finds nothing to do."""
    hours = silence.total_seconds() / 3600
    note = f"no reply from the customer for {hours:g} hours"
    done: list[Resolved] = []
    while True:
        async with transaction(pool) as conn:
            quiet = await lifecycle_db.quiet_replied(conn, now - silence, batch)
            for case in quiet:
                kind = await lifecycle_db.resolve(conn, case.case_id, actor_type=ActorType.SYSTEM, actor_id=ACTOR,
                                                  note=note)
                if case.has_card:  # the card shows the case resolved
                    await queue_case_job(conn, JobName.REVIEW_CARD, case.case_id)
                done.append(Resolved(case.case_id, kind))
        if len(quiet) < batch:
            break
    if done:
        log.info("lifecycle.resolved_quiet", cases=len(done))
    return done
