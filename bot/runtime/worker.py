"""The job worker: pgqueuer over one dedicated connection, our handlers, retries with backoff, a drain."""

from __future__ import annotations

import asyncio
import contextlib
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

# How long a worker whose database went away waits before asking the pool again, doubling up to the cap.
_RECONNECT_FIRST_SECONDS = 0.5
_RECONNECT_MAX_SECONDS = 10.0


class Worker:
    """Runs queued jobs until drained. A job whose process dies is re-picked once its heartbeat is stale;
    a worker whose database connection is lost takes a new one from the pool and goes on."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, metrics: Metrics,
                 handlers: Mapping[str, JobHandler]) -> None:
        self._pool, self._settings, self._metrics = pool, settings, metrics
        self._handlers = dict(handlers)
        self._conn: PoolConnectionProxy | None = None
        self._qm: QueueManager | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._conn = await self._pool.acquire()
        self._task = asyncio.create_task(self._supervise(), name="cx-worker")
        log.info("worker.started", jobs=sorted(self._handlers))

    def _queue_manager(self, conn: PoolConnectionProxy) -> QueueManager:
        # pgqueuer annotates a plain asyncpg.Connection; the pool's proxy forwards every method it calls.
        qm = QueueManager(Queries.from_asyncpg_connection(conn))  # type: ignore[arg-type]
        for name, handler in self._handlers.items():
            qm.entrypoint(
                name,
                on_failure="hold",  # exhausted jobs stay visible for `cx jobs failed` / `retry`
                executor_factory=self._executor_factory,
            )(self._instrumented(name, handler))
        return qm

    async def _supervise(self) -> None:
        """Run the queue manager on the dedicated connection; when the database takes that connection
        away (a restart, a failover), open another and go on. Jobs that were running keep their
        `picked` rows and are picked again once their heartbeat is stale, by this worker or another."""
        settings = self._settings
        batch = max(1, settings.worker_concurrency // 2)
        while True:
            assert self._conn is not None
            self._qm = self._queue_manager(self._conn)
            if self._stopping.is_set():  # a drain that came while this worker was reconnecting
                self._qm.shutdown.set()
            try:
                await self._qm.run(
                    batch_size=batch,
                    max_concurrent_tasks=max(settings.worker_concurrency, 2 * batch),
                    heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_seconds),
                    dequeue_timeout=timedelta(seconds=5),
                )
                lost: Exception | None = None
            except Exception as exc:
                lost = exc
            if self._stopping.is_set() or self._connection_alive():
                if lost is not None:
                    raise lost
                return
            log.warning("worker.connection_lost", error=str(lost) if lost else "closed")
            await self._discard_connection()
            if not await self._reconnect():
                return
            log.info("worker.reconnected")

    def _connection_alive(self) -> bool:
        try:
            return self._conn is not None and not self._conn.is_closed()
        except asyncpg.InterfaceError:  # the pool detached the proxy when the server closed its connection
            return False

    async def _reconnect(self) -> bool:
        """A fresh connection from the pool, retried with backoff until one comes or the worker drains."""
        delay = _RECONNECT_FIRST_SECONDS
        while not self._stopping.is_set():
            try:
                self._conn = await self._pool.acquire(timeout=10)
                return True
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("worker.reconnect_failed", error=str(exc), retry_in_seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, _RECONNECT_MAX_SECONDS)
        return False

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # pgqueuer LISTENs on this connection; closing it is cleaner than handing it back
            # to the pool with a listener attached. The pool opens a fresh one when needed.
            if not conn.is_closed():
                await conn.close()
            await self._pool.release(conn)
        except asyncpg.InterfaceError:
            pass  # already detached: the pool took its holder back when the connection died

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
            # `updated` is when the worker picked it; every instant is the database's, so no host's clock skews it.
            metrics.job_wait.labels(name).observe(max(0.0, (job.updated - max(job.created, job.execute_after))
                                                      .total_seconds()))
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
        if self._task is None:
            return
        self._stopping.set()
        if self._qm is not None:
            self._qm.shutdown.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            log.warning("worker.drain_timeout", grace_seconds=grace)
            if self._connection_alive():
                assert self._conn is not None
                self._conn.terminate()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._discard_connection()
        log.info("worker.stopped")
