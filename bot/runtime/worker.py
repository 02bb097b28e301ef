"""The job worker: pgqueuer over one dedicated connection, our handlers, retries with backoff, a drain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import aiohttp
import asyncpg
import structlog
from pgqueuer.core.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.domain.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from bot.deps import Deps
from bot.services.home import run_create_case_job
from bot.services.review_sla import ReviewSlaJob
from bot.slack.thread_poster import SlackThreadPoster
from pipelines import maintenance
from pipelines.drafting.step import draft_case
from pipelines.intake.gmail_sync import sync_mailbox
from pipelines.jobs import JobName
from pipelines.replies.outbox import Channels, send_reply
from pipelines.review.requests import ActionRequest
from pipelines.triage.step import triage_case

log = structlog.get_logger(__name__)

JobHandler = Callable[[Deps, bytes], Awaitable[None]]


async def _prune(deps: Deps, payload: bytes) -> None:
    await maintenance.prune(deps.pool)


async def _triage(deps: Deps, payload: bytes) -> None:
    if deps.triager is None or deps.taxonomy is None:
        raise RuntimeError("this worker has no triager")
    case_id = UUID(json.loads(payload)["case_id"])
    await triage_case(deps.pool, deps.triager, deps.taxonomy, deps.thresholds, case_id)


async def _gmail_sync(deps: Deps, payload: bytes) -> None:
    if deps.mailbox is None:
        raise RuntimeError("Gmail is not configured (GMAIL_TOKEN_FILE and SUPPORT_EMAIL)")
    await sync_mailbox(
        deps.pool,
        deps.mailbox,
        own_addresses=frozenset(a.lower() for a in (deps.settings.support_email,) if a),
        reopen_window=deps.settings.reopen_window,
    )


async def _draft(deps: Deps, payload: bytes) -> None:
    if deps.drafter is None or deps.taxonomy is None:
        raise RuntimeError("this worker has no drafter")
    case_id = UUID(json.loads(payload)["case_id"])
    await draft_case(deps.pool, deps.drafter, deps.embedder, deps.taxonomy, deps.draft_policy, case_id)


async def _send_reply(deps: Deps, payload: bytes) -> None:
    outbox_id = UUID(json.loads(payload)["outbox_id"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        slack = SlackThreadPoster(deps.slack) if deps.slack is not None else None
        await send_reply(deps.pool, Channels(deps.mailbox, http, slack), deps.sender, outbox_id)


async def _review_card(deps: Deps, payload: bytes) -> None:
    if deps.review is None:
        raise RuntimeError("Slack is not configured (SLACK_BOT_TOKEN); the card waits in the queue")
    await deps.review.post_card(UUID(json.loads(payload)["case_id"]))


async def _review_action(deps: Deps, payload: bytes) -> None:
    if deps.review is None:
        raise RuntimeError("Slack is not configured (SLACK_BOT_TOKEN)")
    await deps.review.run_action(ActionRequest.from_payload(payload))


async def _review_sla(deps: Deps, payload: bytes) -> None:
    if deps.slack is None:
        return  # nothing is claimed without Slack, so the SLA resumes once it is configured
    await ReviewSlaJob(deps.pool, deps.slack, deps.settings).run(datetime.now(UTC))


def job_handlers() -> dict[str, JobHandler]:
    """Every job the product runs, by queue entrypoint name."""
    return {JobName.PRUNE: _prune, JobName.TRIAGE: _triage, JobName.GMAIL_SYNC: _gmail_sync,
            JobName.DRAFT: _draft, JobName.SEND_REPLY: _send_reply, JobName.REVIEW_CARD: _review_card,
            JobName.REVIEW_ACTION: _review_action, JobName.REVIEW_SLA: _review_sla,
            JobName.SLACK_CASE: run_create_case_job}


class Worker:
    """Runs queued jobs until drained. A job whose process dies is re-picked once its heartbeat is stale."""

    def __init__(self, deps: Deps, handlers: Mapping[str, JobHandler]) -> None:
        self._deps = deps
        self._handlers = dict(handlers)
        self._conn: asyncpg.Connection | None = None
        self._qm: QueueManager | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await self._deps.pool.acquire()
        self._qm = QueueManager(Queries.from_asyncpg_connection(self._conn))
        settings = self._deps.settings
        for name, handler in self._handlers.items():
            self._qm.entrypoint(
                name,
                on_failure="hold",  # exhausted jobs stay visible for `cx jobs failed` / `retry`
                executor_factory=self._executor_factory,
            )(self._instrumented(name, handler))
        batch = max(1, settings.worker_concurrency // 2)
        self._task = asyncio.create_task(
            self._qm.run(
                batch_size=batch,
                max_concurrent_tasks=max(settings.worker_concurrency, 2 * batch),
                heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_seconds),
                dequeue_timeout=timedelta(seconds=5),
            ),
            name="cx-worker",
        )
        log.info("worker.started", jobs=sorted(self._handlers))

    def _executor_factory(self, params: EntrypointExecutorParameters) -> DatabaseRetryEntrypointExecutor:
        return DatabaseRetryEntrypointExecutor(
            parameters=params,
            max_attempts=self._deps.settings.job_max_attempts,
            initial_delay=timedelta(seconds=self._deps.settings.job_retry_base_seconds),
            max_delay=timedelta(minutes=10),
        )

    def _instrumented(self, name: str, handler: JobHandler) -> Callable[[Job], Awaitable[None]]:
        metrics = self._deps.metrics

        async def run(job: Job) -> None:
            started = time.perf_counter()
            bound = log.bind(job=name, job_id=job.id, attempt=job.attempts)
            try:
                await handler(self._deps, job.payload or b"")
            except Exception as exc:
                metrics.jobs.labels(name, "error").inc()
                bound.warning("job.failed", error=str(exc), error_type=type(exc).__name__)
                raise
            finally:
                metrics.job_seconds.labels(name).observe(time.perf_counter() - started)
            metrics.jobs.labels(name, "ok").inc()
            bound.info("job.done", ms=round((time.perf_counter() - started) * 1000, 1))

        return run

    async def wait(self) -> None:
        """Return when the worker stops by itself (it only does on a fatal error)."""
        assert self._task is not None
        await self._task

    async def drain(self, grace: float) -> None:
        """Stop taking jobs and let running ones finish for `grace` seconds.

        Jobs still running after that are abandoned, not cancelled: pgqueuer would record a
        cancelled job as done and delete it. Closing the connection first means their rows
        stay `picked`, their heartbeat goes stale, and another worker runs them again.
        """
        if self._qm is None or self._task is None:
            return
        self._qm.shutdown.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            log.warning("worker.drain_timeout", grace_seconds=grace)
            assert self._conn is not None
            self._conn.terminate()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            # pgqueuer LISTENs on this connection; closing it is cleaner than handing it back
            # to the pool with a listener attached. The pool opens a fresh one when needed.
            if not self._conn.is_closed():
                await self._conn.close()
            await self._deps.pool.release(self._conn)
        self._conn = None
        log.info("worker.stopped")
