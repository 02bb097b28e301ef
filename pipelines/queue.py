"""Queueing a case's next job: the one way every step does it."""

from __future__ import annotations

from uuid import UUID

from db import jobs
from db.connection import Connection
from pipelines.jobs import CaseJob, JobName


async def queue_case_job(conn: Connection, job: JobName, case_id: UUID) -> None:
    """Queue a case's job on the caller's transaction; while one is queued for the case, another
    is not (the dedupe key is the job and the case)."""
    await jobs.enqueue(conn, job, CaseJob(case_id=case_id).payload(), dedupe_key=f"{job}:{case_id}")
