"""Queueing jobs the one way every step does it: a case's next job, and a Slack click's job once."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from db import jobs
from db.connection import Connection
from db.pool import transaction
from db.review import first_delivery
from pipelines.jobs import CaseJob, JobName


async def queue_case_job(conn: Connection, job: JobName, case_id: UUID) -> None:
    """Queue a case's job on the caller's transaction; while one is queued for the case, another
    is not (the dedupe key is the job and the case)."""
    await jobs.enqueue(conn, job, CaseJob(case_id=case_id).payload(), dedupe_key=f"{job}:{case_id}")


async def queue_once(pool: asyncpg.Pool, delivery_id: str, job: str, payload: bytes) -> bool:
    """Queue a Slack interaction's job unless its delivery id was seen (a redelivery); True if queued."""
    async with transaction(pool) as conn:
        if not await first_delivery(conn, delivery_id):
            return False
        await jobs.enqueue(conn, job, payload)
    return True
