"""The job worker: pgqueuer over one dedicated connection, our handlers, retries with backoff, a drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from pgqueuer.core.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.domain.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from bot.runtime.metrics import Metrics
from bot.settings import Settings

log = structlog.get_logger(__name__)

# A job's work, given its payload; the job table (bot/jobs.py) binds each to its collaborators.
JobHandler = Callable[[bytes], Awaitable[None]]


class Worker:
    """Runs queued jobs until drained. A job whose process dies is re-picked once its heartbeat is stale."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, metrics: Metrics,
                 handlers: Mapping[str, JobHandler]) -> None:
        self._pool, self._settings, self._metrics = pool, settings, metrics
        self._handlers = dict(handlers)
        self._conn: PoolConnectionProxy | None = None
        self._qm: QueueManager | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await self._pool.acquire()
        # pgqueuer annotates a plain asyncpg.Connection; the pool's proxy forwards every method it calls.
        self._qm = QueueManager(Queries.from_asyncpg_connection(self._conn))  # type: ignore[arg-type]
        settings = self._settings
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
            max_attempts=self._settings.job_max_attempts,
            initial_delay=timedelta(seconds=self._settings.job_retry_base_seconds),
            max_delay=timedelta(minutes=10),
        )

    def _instrumented(self, name: str, handler: JobHandler) -> Callable[[Job], Awaitable[None]]:
        metrics = self._metrics

        async def run(job: Job) -> None:
            started = time.perf_counter()
            bound = log.bind(job=name, job_id=job.id, attempt=job.attempts)
            try:
                await handler(job.payload or b"")
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
            await self._pool.release(self._conn)
        self._conn = None
        log.info("worker.stopped")
