"""Health metric points (health_metrics) and the thresholds in force per metric name (metric_thresholds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.connection import Connection


@dataclass(frozen=True)
class ThresholdPair:
    warning: float | None
    critical: float | None


@dataclass(frozen=True)
class StoredThreshold:
    warning: float | None
    critical: float | None
    source: str  # 'defaults' (the thresholds file) or 'pushed' (a webhook point carried them)
    updated_at: datetime


@dataclass(frozen=True)
class PointRow:
    """One health_metrics row to write: the thresholds and status are those in force when stored."""

    name: str
    value: float
    unit: str | None
    service: str | None
    threshold_warning: float | None
    threshold_critical: float | None
    status: str
    recorded_at: datetime | None  # None: the database's now()


_SELECT = "SELECT metric_name, threshold_warning, threshold_critical, source, updated_at FROM metric_thresholds"


def _stored(rows: Iterable[asyncpg.Record]) -> dict[str, StoredThreshold]:
    return {
        r["metric_name"]: StoredThreshold(r["threshold_warning"], r["threshold_critical"], r["source"], r["updated_at"])
        for r in rows
    }


async def thresholds_for(conn: Connection, names: Iterable[str]) -> dict[str, StoredThreshold]:
    """The thresholds in force for these metric names; a name without any is absent."""
    return _stored(await conn.fetch(_SELECT + " WHERE metric_name = ANY($1::text[])", sorted(set(names))))


async def all_thresholds(conn: Connection) -> dict[str, StoredThreshold]:
    return _stored(await conn.fetch(_SELECT))


# A default never replaces a pushed pair, and an unchanged default keeps its updated_at.
_UPSERT_DEFAULTS = """
INSERT INTO metric_thresholds (metric_name, threshold_warning, threshold_critical, source)
SELECT n, w, c, 'defaults' FROM unnest($1::text[], $2::float8[], $3::float8[]) AS d(n, w, c)
ON CONFLICT (metric_name) DO UPDATE
    SET threshold_warning = EXCLUDED.threshold_warning, threshold_critical = EXCLUDED.threshold_critical,
        updated_at = now()
    WHERE metric_thresholds.source = 'defaults'
      AND (metric_thresholds.threshold_warning, metric_thresholds.threshold_critical)
          IS DISTINCT FROM (EXCLUDED.threshold_warning, EXCLUDED.threshold_critical)
"""

_DROP_STALE_DEFAULTS = "DELETE FROM metric_thresholds WHERE source = 'defaults' AND metric_name <> ALL($1::text[])"


async def replace_default_thresholds(conn: Connection, defaults: Mapping[str, ThresholdPair]) -> None:
    """Make the 'defaults' rows those of `defaults` (call inside a transaction)."""
    names = sorted(defaults)  # one lock order for every writer of these rows
    await conn.execute(_DROP_STALE_DEFAULTS, names)
    await conn.execute(
        _UPSERT_DEFAULTS, names, [defaults[n].warning for n in names], [defaults[n].critical for n in names]
    )


_PUSH = """
INSERT INTO metric_thresholds (metric_name, threshold_warning, threshold_critical, source)
SELECT n, w, c, 'pushed' FROM unnest($1::text[], $2::float8[], $3::float8[]) AS p(n, w, c)
ON CONFLICT (metric_name) DO UPDATE
    SET threshold_warning = EXCLUDED.threshold_warning, threshold_critical = EXCLUDED.threshold_critical,
        source = 'pushed', updated_at = now()
"""


async def push_thresholds(conn: Connection, pushed: Mapping[str, ThresholdPair]) -> None:
    """Replace these metrics' thresholds with pushed ones, which defaults never overwrite."""
    names = sorted(pushed)
    if names:
        await conn.execute(_PUSH, names, [pushed[n].warning for n in names], [pushed[n].critical for n in names])


_INSERT_POINTS = """
INSERT INTO health_metrics (metric_name, metric_value, unit, service, threshold_warning, threshold_critical,
                            status, source, recorded_at)
SELECT n, v, u, s, w, c, st, $9, coalesce(r, now())
FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::text[],
            $8::timestamptz[]) AS p(n, v, u, s, w, c, st, r)
"""


async def insert_points(conn: Connection, rows: Sequence[PointRow], *, source: str) -> int:
    if not rows:
        return 0
    await conn.execute(
        _INSERT_POINTS,
        [r.name for r in rows], [r.value for r in rows], [r.unit for r in rows], [r.service for r in rows],
        [r.threshold_warning for r in rows], [r.threshold_critical for r in rows], [r.status for r in rows],
        [r.recorded_at for r in rows], source,
    )
    return len(rows)
