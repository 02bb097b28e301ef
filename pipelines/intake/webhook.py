"""Intake: a request becomes a committed case, with its triage job, before any AI sees it."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from db import intake as intake_db
from pipelines.jobs import JobName
from pipelines.models import Intake, IntakeOutcome, IntakeRequest

log = structlog.get_logger(__name__)


class WorkerWakeup:
    """Tells the workers that jobs are queued: one NOTIFY, on its own connection after the cases
    committed, for however many cases committed while the previous one was on its way. Inside the
    intake's transaction a NOTIFY would make PostgreSQL commit the cases one at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def poke(self) -> None:
        if self._task is not None:
            self._again = True
            return
        self._task = asyncio.create_task(self._send(), name="cx-wake-workers")

    async def idle(self) -> None:
        """Return once no wake-up is on its way (tests, shutdown)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _send(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    async with self._pool.acquire() as conn:
                        await intake_db.wake_workers(conn)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # The job is committed; a worker's next poll (at most 5 s) finds it.
                    log.warning("intake.wake_workers_failed", error=str(exc))
                if not self._again:
                    return
        finally:
            self._task = None


async def intake_webhook(pool: asyncpg.Pool, request: IntakeRequest, *, replay_key: str,
                         wakeup: WorkerWakeup | None = None) -> Intake:
    """Store a webhook request. Without an external_id the signature is the idempotency key,
    so a replayed request (same body, same timestamp) has no second effect. With `wakeup`, the
    workers hear of the triage job from it rather than from the job's own insert."""
    metadata = dict(request.metadata)
    if request.callback_url is not None:
        metadata["callback_url"] = str(request.callback_url)
    async with pool.acquire() as conn:
        stored = await intake_db.create_case(
            conn,
            customer_email=str(request.customer_email),
            customer_name=request.customer_name,
            channel=request.channel,
            subject=request.subject,
            description=request.description,
            interaction_type="webhook_in",
            severity=request.severity,
            product=request.product,
            product_version=request.product_version,
            environment=request.environment,
            external_id=request.external_id or replay_key,
            metadata=metadata,
            triage_entrypoint=JobName.TRIAGE,
            notify_later=wakeup is not None,
        )
    if wakeup is not None and stored.created:
        wakeup.poke()
    return stored_outcome(stored)


def stored_outcome(stored: intake_db.StoredCase) -> Intake:
    """What intake reports for a case it stored, or found stored under the same key."""
    return Intake(
        outcome=IntakeOutcome.CREATED if stored.created else IntakeOutcome.DUPLICATE,
        case_id=stored.case_id,
        short_id=stored.short_id,
        status=stored.status,
    )
