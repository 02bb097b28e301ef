"""APScheduler only produces ticks; each tick enqueues its period's job once, however many replicas tick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.runtime.metrics import Metrics
from bot.settings import Settings
from db import jobs
from pipelines.jobs import JobName

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Schedule:
    job: str
    trigger: BaseTrigger
    period_of: Callable[[datetime], str]  # the period a tick at this instant belongs to
    payload: bytes = b"{}"


def local_day(zone: ZoneInfo) -> Callable[[datetime], str]:
    return lambda instant: instant.astimezone(zone).date().isoformat()


def every(seconds: int) -> Callable[[datetime], str]:
    return lambda instant: str(int(instant.timestamp()) // seconds)


def schedules(settings: Settings, *, gmail: bool) -> list[Schedule]:
    zone = settings.zone
    plan = [Schedule(JobName.PRUNE, CronTrigger(hour=3, minute=30, timezone=zone), local_day(zone))]
    if gmail:
        seconds = settings.gmail_poll_seconds
        plan.append(Schedule(JobName.GMAIL_SYNC, IntervalTrigger(seconds=seconds), every(seconds)))
    if settings.slack_bot_token is not None:
        plan.append(Schedule(JobName.REVIEW_SLA, IntervalTrigger(seconds=60), every(60)))
    # Detection runs with or without Slack: its alerts are stored, and posted once Slack is there.
    seconds = settings.detect_interval_minutes * 60
    plan.append(Schedule(JobName.DETECT, IntervalTrigger(seconds=seconds), every(seconds)))
    return plan


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, metrics: Metrics, zone: ZoneInfo, plan: list[Schedule]) -> None:
        self._pool, self._metrics = pool, metrics
        self._plan = plan
        self._aps = AsyncIOScheduler(timezone=zone)

    async def tick(self, schedule: Schedule, now: datetime | None = None) -> bool:
        """Enqueue the job for the period `now` falls in; False if some replica already did."""
        period = schedule.period_of(now or datetime.now(UTC))
        async with self._pool.acquire() as conn:
            enqueued = await jobs.enqueue_for_period(conn, schedule.job, period, schedule.payload)
        self._metrics.scheduled.labels(schedule.job, str(enqueued).lower()).inc()
        log.info("scheduler.tick", job=schedule.job, period=period, enqueued=enqueued)
        return enqueued

    def start(self) -> None:
        for schedule in self._plan:
            self._aps.add_job(
                self.tick,
                trigger=schedule.trigger,
                args=[schedule],
                id=schedule.job,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=3600,
            )
        self._aps.start()
        log.info("scheduler.started", jobs=[s.job for s in self._plan])

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
