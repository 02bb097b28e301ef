"""The daily job (workflow 5) for one local day D, once however often it runs: D's metrics stored,
the KB gaps of the 7 days to D's end (their article drafts queued), the defect bugs and, when
enough new labelled examples exist, a retraining queued as jobs of their own, then the report
built, stored, and queued for delivery to each configured destination."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from db import daily_metrics as metrics_db
from db import jobs
from db import report_deliveries as deliveries_db
from db.pool import transaction
from db.retrains import latest_retrain
from pipelines.jobs import DayJob, JobName, ReportDelivery, ReportDestination
from pipelines.learning.daily_metrics import compute_day, day_bounds, history, store_day
from pipelines.learning.kb_gaps import KbGap, find_gaps, kb_gaps_step
from pipelines.learning.report import (
    BASELINE_DAYS,
    TREND_DAYS,
    DailyReport,
    ReportGap,
    ReportRetrain,
    changes,
    trend_point,
)
from pipelines.ports import Embedder

log = structlog.get_logger(__name__)

GAP_DAYS = 7


@dataclass(frozen=True)
class DailyConfig:
    """What the daily job needs of the settings (TIMEZONE, KB_GAP_*, KB_DRAFTS_PER_DAY,
    RETRAIN_MIN_NEW_EXAMPLES) and where the report goes."""

    zone: ZoneInfo
    kb_gap_min_cases: int
    kb_gap_max_score: float | None
    kb_drafts_per_day: int
    retrain_min_new_examples: int
    slack_channel: str | None  # SLACK_METRICS_CHANNEL when Slack is configured
    leadership_email: str | None
    sender_domain: str  # of SUPPORT_EMAIL: the email's Message-ID is ours

    def destinations(self) -> list[tuple[ReportDestination, str]]:
        out = []
        if self.slack_channel:
            out.append((ReportDestination.SLACK, self.slack_channel))
        if self.leadership_email:
            out.append((ReportDestination.EMAIL, self.leadership_email))
        return out


def _gap(gap: KbGap) -> ReportGap:
    return ReportGap(title=gap.title, case_ids=gap.case_ids, best_article=gap.best_article, best_score=gap.best_score)


async def build_report(pool: asyncpg.Pool, embedder: Embedder | None, day: date, config: DailyConfig, *,
                       record: bool, now: datetime | None = None) -> DailyReport:
    """The report of `day`. With `record`, as the daily job makes it: the day's metrics (and any
    earlier day the baseline needs and nobody stored) go in daily_metrics, and the KB gaps are
    recorded with their drafts queued; without, nothing is written (`cx report daily` previews)."""
    zone = config.zone
    metrics = await compute_day(pool, day, zone)
    if record:
        await store_day(pool, day, metrics, zone)
    earlier = [day - timedelta(days=n) for n in range(TREND_DAYS - 1, 0, -1)]
    past = await history(pool, earlier, zone, store=record)
    baseline = [past[d] for d in earlier[-BASELINE_DAYS:] if d in past]
    day_start, day_end = day_bounds(day, zone)
    if record:
        gaps = await kb_gaps_step(pool, embedder, until=day_end, days=GAP_DAYS, min_cases=config.kb_gap_min_cases,
                                  max_score=config.kb_gap_max_score, drafts_per_day=config.kb_drafts_per_day)
    else:
        found = await find_gaps(pool, embedder, since=day_end - timedelta(days=GAP_DAYS), until=day_end,
                                min_cases=config.kb_gap_min_cases, max_score=config.kb_gap_max_score)
        gaps = [gap for gap, _, _ in found]
    async with pool.acquire() as conn:
        retrain = await latest_retrain(conn, since=day_start, until=now or datetime.now(UTC))
    return DailyReport(
        day=day, timezone=zone.key, metrics=metrics, baseline_days=len(baseline), changes=changes(metrics, baseline),
        kb_gaps=[_gap(g) for g in gaps],
        retrain=ReportRetrain.model_validate(retrain.model_dump()) if retrain else None,
        trend=[trend_point(d, m) for d, m in past.items()] + [trend_point(day, metrics)],
    )


async def run_daily(pool: asyncpg.Pool, embedder: Embedder | None, day: date, config: DailyConfig) -> DailyReport:
    """The DAILY_REPORT job. A retry repeats only what has no effect twice: the metrics are
    replaced, gaps found again update their rows, and each follow-up job and each delivery is
    claimed once per day."""
    from pipelines.learning.retrain import retrain_due  # scikit-learn and SciPy: only where the job runs

    async with transaction(pool) as conn:
        await metrics_db.set_timezone(conn, config.zone.key)
    report = await build_report(pool, embedder, day, config, record=True)
    period = day.isoformat()
    async with transaction(pool) as conn:
        await metrics_db.save_report(conn, day, report.model_dump_json())
        await jobs.enqueue_for_period(conn, JobName.FILE_BUGS, period, DayJob(day=day).payload())
        if await retrain_due(conn, config.retrain_min_new_examples) is not None:
            await jobs.enqueue_for_period(conn, JobName.RETRAIN, period, DayJob(day=day).payload())
        for destination, recipient in config.destinations():
            message_id = (f"<cx-daily-{period}.{secrets.token_hex(6)}@{config.sender_domain}>"
                          if destination is ReportDestination.EMAIL else None)
            if await deliveries_db.create(conn, day, destination, recipient, message_id):
                await jobs.enqueue(conn, JobName.REPORT_DELIVER,
                                   ReportDelivery(day=day, destination=destination).payload(),
                                   dedupe_key=f"{JobName.REPORT_DELIVER}:{period}:{destination}")
    log.info("daily.report", day=period, received=report.metrics.received, resolved=report.metrics.resolved,
             gaps=len(report.kb_gaps))
    return report


async def stored_report(pool: asyncpg.Pool, day: date) -> DailyReport:
    """The report the daily job stored for `day`: what every destination delivers."""
    async with pool.acquire() as conn:
        stored = await metrics_db.load_report(conn, day)
    if stored is None:
        raise LookupError(f"no daily report stored for {day}")
    return DailyReport.model_validate_json(stored)
