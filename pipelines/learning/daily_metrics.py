"""One local day's metrics: computed by the SQL definitions (db/migrations/0014), stored in
daily_metrics, and read back for the 7-day baseline and the 14-day trend."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import ValidationError

from db import daily_metrics as metrics_db
from db.pool import transaction
from pipelines.learning.report import DailyMetrics


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of `day` in `zone`: 23 or 25 hours across a clock change."""
    return datetime.combine(day, time(), zone), datetime.combine(day + timedelta(days=1), time(), zone)


def previous_day(now: datetime, zone: ZoneInfo) -> date:
    """The local day before the one `now` falls in: the day a report at `now` is about."""
    return now.astimezone(zone).date() - timedelta(days=1)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def metrics_of(figures: dict[str, Any]) -> DailyMetrics:
    return DailyMetrics.model_validate({k: _plain(v) for k, v in figures.items()})


async def compute_day(pool: asyncpg.Pool, day: date, zone: ZoneInfo) -> DailyMetrics:
    async with pool.acquire() as conn:
        return metrics_of(await metrics_db.compute(conn, *day_bounds(day, zone)))


async def store_day(pool: asyncpg.Pool, day: date, metrics: DailyMetrics, zone: ZoneInfo) -> None:
    """The day's row in daily_metrics (again: replaced); the figures the table has no column for go
    in its `extra`, with the zone the day was cut in."""
    figures = metrics.model_dump()
    extra = {k: v for k, v in figures.items() if k not in metrics_db.TABLE_COLUMNS} | {"timezone": zone.key}
    async with transaction(pool) as conn:
        await metrics_db.store(conn, day, figures, json.dumps(extra))


async def history(pool: asyncpg.Pool, days: list[date], zone: ZoneInfo, *, store: bool) -> dict[date, DailyMetrics]:
    """The metrics of `days` that the desk existed on (none before its first case): the stored row
    of a day if it was cut in this zone, else computed now (and stored, with `store`)."""
    if not days:
        return {}
    async with pool.acquire() as conn:
        first = await metrics_db.first_case_at(conn)
        stored = await metrics_db.stored_days(conn, min(days), max(days))
    if first is None:
        return {}
    found: dict[date, DailyMetrics] = {}
    for day, columns, extra_json in stored:
        extra = json.loads(extra_json)
        if extra.pop("timezone", None) != zone.key:
            continue
        try:
            found[day] = metrics_of(columns | extra)
        except ValidationError:  # a row written before a figure existed: computed again below
            continue
    first_day = first.astimezone(zone).date()
    for day in days:
        if day < first_day or day in found:
            continue
        found[day] = await compute_day(pool, day, zone)
        if store:
            await store_day(pool, day, found[day], zone)
    return {day: found[day] for day in sorted(found)}
