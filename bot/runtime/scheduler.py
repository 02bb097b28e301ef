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
from pipelines.jobs import DayJob, JobName
from pipelines.learning.daily_metrics import previous_day

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Schedule:
    job: str
    trigger: BaseTrigger
    period_of: Callable[[datetime], str]  # the period a tick at this instant belongs to
    payload: bytes = b"{}"
    payload_of: Callable[[datetime], bytes] | None = None  # instead of `payload`: one that names the period


def local_day(zone: ZoneInfo) -> Callable[[datetime], str]:
    return lambda instant: instant.astimezone(zone).date().isoformat()


def report_day(zone: ZoneInfo) -> Callable[[datetime], str]:
    """The local day before the instant's: the day a daily report made then is about."""
    return lambda instant: previous_day(instant, zone).isoformat()


def report_day_job(zone: ZoneInfo) -> Callable[[datetime], bytes]:
    return lambda instant: DayJob(day=previous_day(instant, zone)).payload()


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
        plan.append(Schedule(JobName.BUDGET_CHECK, IntervalTrigger(seconds=300), every(300)))
    # Detection runs with or without Slack: its alerts are stored, and posted once Slack is there.
    seconds = settings.detect_interval_minutes * 60
    plan.append(Schedule(JobName.DETECT, IntervalTrigger(seconds=seconds), every(seconds)))
    if settings.anthropic_api_key is not None and settings.anthropic_batches:
        plan.append(Schedule(JobName.BATCHES, IntervalTrigger(seconds=60), every(60)))
    plan.append(Schedule(JobName.RESOLVE_QUIET, IntervalTrigger(seconds=3600), every(3600)))
    if settings.backup_nightly:
        plan.append(Schedule(JobName.BACKUP, CronTrigger(hour=settings.backup_hour, timezone=zone), local_day(zone)))
    # The daily report is about the previous local day: the day is the period, and the payload names it.
    plan.append(Schedule(JobName.DAILY_REPORT, CronTrigger(hour=settings.daily_report_hour, timezone=zone),
                         report_day(zone), payload_of=report_day_job(zone)))
    return plan


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, metrics: Metrics, zone: ZoneInfo, plan: list[Schedule]) -> None:
        self._pool, self._metrics = pool, metrics
        self._plan = plan
        self._aps = AsyncIOScheduler(timezone=zone)

    async def tick(self, schedule: Schedule, now: datetime | None = None) -> bool:
        """Enqueue the job for the period `now` falls in; False if some replica already did."""
        instant = now or datetime.now(UTC)
        period = schedule.period_of(instant)
        payload = schedule.payload_of(instant) if schedule.payload_of is not None else schedule.payload
        async with self._pool.acquire() as conn:
            enqueued = await jobs.enqueue_for_period(conn, schedule.job, period, payload)
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
