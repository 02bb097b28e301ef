"""Daily metrics: one day's figures from the SQL definitions (migration 0014), the stored
daily_metrics rows, and the report each day delivered."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from db.connection import Connection


async def compute(conn: Connection, day_start: datetime, day_end: datetime) -> dict[str, Any]:
    """Every figure of the local day [day_start, day_end), by daily_metrics_between's column names."""
    row = await conn.fetchrow("SELECT * FROM daily_metrics_between($1, $2)", day_start, day_end)
    assert row is not None  # the function is one row of aggregates
    return dict(row)


async def set_timezone(conn: Connection, timezone: str) -> None:
    """The zone the metrics_daily* views cut days in: TIMEZONE."""
    await conn.execute(
        "UPDATE report_settings SET timezone = $1, updated_at = now() WHERE timezone IS DISTINCT FROM $1", timezone
    )


# The table's own columns; every other figure goes in `extra`.
_UPSERT = """
INSERT INTO daily_metrics (metric_date, received, resolved, escalated, self_service_rate, approve_rate, edit_rate,
                           reject_rate, median_first_response_minutes, median_resolution_minutes, csat_avg,
                           csat_count, triage_accuracy, kb_match_rate, llm_cost_usd, cost_per_case, extra,
                           computed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, now())
ON CONFLICT (metric_date) DO UPDATE SET
    received = EXCLUDED.received, resolved = EXCLUDED.resolved, escalated = EXCLUDED.escalated,
    self_service_rate = EXCLUDED.self_service_rate, approve_rate = EXCLUDED.approve_rate,
    edit_rate = EXCLUDED.edit_rate, reject_rate = EXCLUDED.reject_rate,
    median_first_response_minutes = EXCLUDED.median_first_response_minutes,
    median_resolution_minutes = EXCLUDED.median_resolution_minutes, csat_avg = EXCLUDED.csat_avg,
    csat_count = EXCLUDED.csat_count, triage_accuracy = EXCLUDED.triage_accuracy,
    kb_match_rate = EXCLUDED.kb_match_rate, llm_cost_usd = EXCLUDED.llm_cost_usd,
    cost_per_case = EXCLUDED.cost_per_case, extra = EXCLUDED.extra, computed_at = now()
"""

TABLE_COLUMNS = ("received", "resolved", "escalated", "self_service_rate", "approve_rate", "edit_rate", "reject_rate",
                 "median_first_response_minutes", "median_resolution_minutes", "csat_avg", "csat_count",
                 "triage_accuracy", "kb_match_rate", "llm_cost_usd", "llm_cost_per_case")


async def store(conn: Connection, day: date, figures: dict[str, Any], extra_json: str) -> None:
    """The day's row: the figures the table has columns for (llm_cost_per_case is its cost_per_case),
    the rest as `extra_json`, a JSON object."""
    await conn.execute(_UPSERT, day, *(figures[c] for c in TABLE_COLUMNS), extra_json)


_STORED = """
SELECT metric_date, received, resolved, escalated, self_service_rate, approve_rate, edit_rate, reject_rate,
       median_first_response_minutes, median_resolution_minutes, csat_avg, csat_count, triage_accuracy,
       kb_match_rate, llm_cost_usd, cost_per_case AS llm_cost_per_case, extra::text AS extra
FROM daily_metrics WHERE metric_date >= $1 AND metric_date <= $2
ORDER BY metric_date
"""


async def stored_days(conn: Connection, first: date, last: date) -> list[tuple[date, dict[str, Any], str]]:
    """(day, the table's figures, `extra` as JSON text) of the stored days in [first, last]."""
    rows = await conn.fetch(_STORED, first, last)
    return [(r["metric_date"], {c: r[c] for c in TABLE_COLUMNS}, r["extra"]) for r in rows]


async def save_report(conn: Connection, day: date, report_json: str) -> None:
    await conn.execute("UPDATE daily_metrics SET report = $2::jsonb WHERE metric_date = $1", day, report_json)


async def load_report(conn: Connection, day: date) -> str | None:
    """The report stored for the day, as JSON text; None before the daily job made it."""
    text: str | None = await conn.fetchval("SELECT report::text FROM daily_metrics WHERE metric_date = $1", day)
    return text


async def first_case_at(conn: Connection) -> datetime | None:
    """When the desk's first case arrived: days before it have nothing to compare with."""
    first: datetime | None = await conn.fetchval("SELECT min(created_at) FROM cases")
    return first
