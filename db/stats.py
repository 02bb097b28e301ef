"""The figures an operator watches: `cx stats`, and what /metrics reads from the database on a scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from db.connection import Connection

# A job waits from when it may run (created, or its retry's back-off ended), not from when it was
# first made: a job delayed on purpose is not late.
_OLDEST_QUEUED = """
SELECT entrypoint, extract(epoch FROM now() - min(execute_after))::float8 AS age_seconds
FROM pgqueuer
WHERE status = 'queued' AND execute_after <= now()
GROUP BY entrypoint
"""


async def oldest_queued_ages(conn: Connection) -> dict[str, float]:
    """Seconds the oldest runnable queued job of each job name has waited; names with none are absent."""
    return {r["entrypoint"]: r["age_seconds"] for r in await conn.fetch(_OLDEST_QUEUED)}


@dataclass(frozen=True)
class CostTotal:
    step: str
    provider: str
    cost_usd: Decimal


# One statement moves the ledger into the totals, so a reader sees each cost in one or the other,
# never both. Two scrapes folding at once: the second waits for the first's rows, then finds them gone.
_FOLD_LEDGER = """
WITH moved AS (DELETE FROM llm_cost_ledger RETURNING step, provider, cost_usd)
INSERT INTO llm_cost_totals AS t (step, provider, cost_usd)
SELECT step, provider, sum(cost_usd) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (step, provider) DO UPDATE SET cost_usd = t.cost_usd + EXCLUDED.cost_usd
"""
_COST_TOTALS = """
SELECT step, provider, sum(cost_usd) AS cost_usd
FROM (SELECT step, provider, cost_usd FROM llm_cost_totals
      UNION ALL
      SELECT step, provider, cost_usd FROM llm_cost_ledger) t
GROUP BY 1, 2
ORDER BY 1, 2
"""


async def llm_cost_totals(conn: Connection) -> list[CostTotal]:
    """Every AI call's cost since the install, by step and provider (migration 0025 keeps the sums)."""
    await conn.execute(_FOLD_LEDGER)
    return [CostTotal(r["step"], r["provider"], r["cost_usd"]) for r in await conn.fetch(_COST_TOTALS)]


@dataclass(frozen=True)
class OpsStats:
    since: datetime
    received: int
    by_status: dict[str, int]
    by_route: dict[str, int]  # "untriaged": no route yet
    resolved: int
    self_service_resolved: int
    review_backlog: int
    oldest_review_seconds: float | None
    failed_jobs: int
    llm_cost_usd: Decimal


# The window is the last N days back from now. Cases: those created in it, by where they are now
# and by the route triage chose. Self-service: of the cases resolved in it, those resolved by the AI
# alone (the daily report's definition). Reviews and failed jobs: as they stand now. LLM cost: the
# calls made in it, whether their detail is still kept or retention rolled it up by the hour.
_CASES_BY = """
SELECT status, coalesce(metadata->>'route', 'untriaged') AS route, count(*)::int AS n
FROM cases WHERE created_at >= $1
GROUP BY 1, 2
"""
_FIGURES = """
SELECT (SELECT count(*) FROM cases WHERE resolved_at >= $1)::int AS resolved,
       (SELECT count(*) FROM cases WHERE resolved_at >= $1 AND resolution_type = 'self_service')::int
           AS self_service_resolved,
       (SELECT count(*) FROM review_queue WHERE status = 'pending')::int AS review_backlog,
       (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM review_queue WHERE status = 'pending')
           AS oldest_review_seconds,
       (SELECT count(*) FROM pgqueuer WHERE status = 'failed')::int AS failed_jobs,
       (SELECT coalesce(sum(cost_usd), 0) FROM llm_usage WHERE created_at >= $1)
       + (SELECT coalesce(sum(cost_usd), 0) FROM llm_usage_hourly WHERE hour >= $1)
           AS llm_cost_usd
"""


async def ops_stats(conn: Connection, days: int) -> OpsStats:
    since: datetime = await conn.fetchval("SELECT now() - make_interval(days => $1)", days)
    by_status: dict[str, int] = {}
    by_route: dict[str, int] = {}
    for r in await conn.fetch(_CASES_BY, since):
        by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
        by_route[r["route"]] = by_route.get(r["route"], 0) + r["n"]
    figures = await conn.fetchrow(_FIGURES, since)
    assert figures is not None  # a SELECT without FROM: one row
    return OpsStats(
        since=since,
        received=sum(by_status.values()),
        by_status=dict(sorted(by_status.items())),
        by_route=dict(sorted(by_route.items())),
        resolved=figures["resolved"],
        self_service_resolved=figures["self_service_resolved"],
        review_backlog=figures["review_backlog"],
        oldest_review_seconds=figures["oldest_review_seconds"],
        failed_jobs=figures["failed_jobs"],
        llm_cost_usd=figures["llm_cost_usd"],
    )
