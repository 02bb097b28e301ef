"""The daily report's computation over a large desk: one local day's metrics (the SQL definitions of
migration 0014, through the view a Grafana user would query and through the daily job's function),
the whole report (the day, the 13 earlier days of its trend computed cold, the KB gaps), and the chart.

    python bench/daily_report.py [--cases 1000000] [--days 60] [--runs 5] [--seed 0] [--keep] [--json]

Builds a scratch database (bench/scratch_db.py: the embedded server in a temporary directory, or
DATABASE_URL's server), generated inside PostgreSQL (generate_series; the build time is reported apart,
not measured; `--keep` keeps it, under <tmp>/cx-bench-daily, for the next run with `--keep`):
`--cases` cases over the `--days` local days (America/New_York) before DAY's end, 95% resolved or closed
(resolution 10 minutes to 3 days, lognormal-ish), 70% with a first response, 40% of the resolved with a
CSAT; the last 4 days' cases have their status moves in case_interactions (4 each), so the backlog reads
history; a review for 30% of cases (approved / edited / rejected / escalated / pending, due 2 hours after),
a category correction on a fifth of the edited; an AI draft for 60% (half citing an article); 1.5
llm_usage rows per case; a taxonomy label on every case.
Then, `--runs` times each: `SELECT * FROM metrics_daily WHERE day = DAY` (the view), the daily job's
`compute_day` (daily_metrics_between), `build_report` without writing (14 days of metrics, KB gaps
grouped by label), and the chart; medians printed, with targets 30 s (computation) and 2 s (chart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database  # noqa: E402

from bot.runtime.logs import configure_logging  # noqa: E402
from db import daily_metrics as metrics_db  # noqa: E402
from db.pool import create_pool  # noqa: E402
from pipelines.learning.chart import trend_chart  # noqa: E402
from pipelines.learning.daily import DailyConfig, build_report  # noqa: E402
from pipelines.learning.daily_metrics import compute_day  # noqa: E402

ZONE = ZoneInfo("America/New_York")
DAY = date(2026, 11, 17)
TARGET_SECONDS = 30.0
CHART_TARGET_SECONDS = 2.0


def _build_sql(cases: int, days: int, day_end: datetime, seed: int) -> list[str]:
    span = days * 86400
    end = day_end.isoformat()
    return [
        f"SELECT setseed({(seed % 1000) / 1000})",
        "INSERT INTO customers (email) SELECT 'bench' || n || '@example.com' FROM generate_series(1, 20000) n",
        # Times: uniform over the span; status and timestamps follow one random draw per case.
        f"""
        CREATE TEMP TABLE draws AS
        SELECT n, timestamptz '{end}' - make_interval(secs => random() * {span}) AS created_at,
               random() AS r_status, random() AS r_time, random() AS r_csat, random() AS r_first
        FROM generate_series(1, {cases}) n
        """,
        """
        INSERT INTO cases (customer_id, channel, external_id, description, category, subcategory, status,
                           created_at, updated_at, first_response_at, resolved_at, closed_at, resolution_type, csat)
        SELECT cu.ids[1 + d.n % 20000],
               'import', 'bench-' || d.n, 'bench case', (ARRAY['billing','account','cards','transfers','defect'])[1 + d.n % 5],
               'sub' || (d.n % 7),
               CASE WHEN d.r_status < 0.80 THEN 'resolved' WHEN d.r_status < 0.95 THEN 'closed'
                    WHEN d.r_status < 0.97 THEN 'replied' ELSE 'triaged' END,
               d.created_at, d.created_at,
               CASE WHEN d.r_first < 0.7 THEN d.created_at + make_interval(mins => 5 + (d.r_first * 600)::int) END,
               CASE WHEN d.r_status < 0.95 THEN d.created_at + make_interval(mins => (10 + exp(d.r_time * 8.4)::int)) END,
               CASE WHEN d.r_status >= 0.80 AND d.r_status < 0.95
                    THEN d.created_at + make_interval(mins => (20 + exp(d.r_time * 8.4)::int)) END,
               CASE WHEN d.r_status < 0.95
                    THEN (ARRAY['self_service','collaborative','human','escalated'])[1 + d.n % 4] END,
               CASE WHEN d.r_status < 0.95 AND d.r_csat < 0.4 THEN 1 + (d.r_csat * 10)::int % 5 END
        FROM draws d, (SELECT array_agg(customer_id) AS ids FROM customers) cu
        """,
        # The last 4 days' cases carry their moves, so the backlog at a recent day reads history.
        f"""
        INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, from_status, to_status, created_at)
        SELECT c.case_id, 'system', 'bench', 'status_change', m.from_status, m.to_status, c.created_at + m.after
        FROM cases c
        CROSS JOIN LATERAL (VALUES ('new', 'triaged', interval '1 minute'),
                                   ('triaged', 'drafting', interval '2 minutes'),
                                   ('drafting', 'sending', interval '3 minutes'),
                                   ('sending', 'replied', interval '4 minutes')) AS m(from_status, to_status, after)
        WHERE c.created_at >= timestamptz '{end}' - interval '4 days'
        """,
        """
        INSERT INTO review_queue (case_id, status, reviewed_at, due_at, created_at)
        SELECT case_id, s.status,
               CASE WHEN s.status <> 'pending' THEN created_at + make_interval(mins => 10 + (short_id % 200)::int) END,
               created_at + interval '2 hours', created_at
        FROM cases
        CROSS JOIN LATERAL (SELECT (ARRAY['approved','edited','rejected','escalated','pending'])[1 + (short_id / 10) % 5]
                            AS status) s
        WHERE short_id % 10 < 3
        """,
        """
        INSERT INTO agent_feedback (case_id, review_id, feedback_type, field, ai_value, human_value, created_at)
        SELECT case_id, review_id, 'correction', 'category', 'billing', 'account', reviewed_at
        FROM review_queue WHERE status = 'edited' AND hashtext(review_id::text) % 5 = 0
        """,
        """
        INSERT INTO case_drafts (case_id, body, cited_article_ids, confidence, drafter, decision, decision_reason,
                                 created_at)
        SELECT case_id, 'draft', CASE WHEN short_id % 2 = 0 THEN ARRAY[gen_random_uuid()] ELSE '{}' END, 0.8,
               'claude', 'review', 'bench', created_at + interval '3 minutes'
        FROM cases WHERE short_id % 10 < 6
        """,
        """
        INSERT INTO llm_usage (step, provider, model, cost_usd, case_id, created_at)
        SELECT 'triage', 'anthropic', 'claude-haiku-4-5', 0.0012, case_id, created_at + interval '1 minute' FROM cases
        UNION ALL
        SELECT 'draft', 'anthropic', 'claude-sonnet-4-6', 0.0150, case_id, created_at + interval '3 minutes'
        FROM cases WHERE short_id % 2 = 0
        """,
        "DROP TABLE draws",
    ]


async def build(dsn: str, args: argparse.Namespace, day_end: datetime) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for statement in _build_sql(args.cases, args.days, day_end, args.seed):
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def timed(runs: int, make: Any) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await make()
        seconds.append(time.perf_counter() - started)
    return seconds, result


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    pool = await create_pool(dsn, min_size=1, max_size=4)
    config = DailyConfig(zone=ZONE, kb_gap_min_cases=3, kb_gap_max_score=None, kb_drafts_per_day=3,
                         retrain_min_new_examples=200, slack_channel=None, leadership_email=None,
                         sender_domain="bench.invalid")
    try:
        async with pool.acquire() as conn:
            await metrics_db.set_timezone(conn, ZONE.key)
            facts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM cases) AS cases, (SELECT count(*) FROM case_interactions) AS moves, "
                "(SELECT count(*) FROM review_queue) AS reviews, (SELECT count(*) FROM case_drafts) AS drafts, "
                "(SELECT count(*) FROM llm_usage) AS usage, pg_size_pretty(pg_total_relation_size('cases')) AS size")

        async def view() -> Any:
            async with pool.acquire() as conn:
                return await conn.fetchrow("SELECT * FROM metrics_daily WHERE day = $1", DAY)

        view_seconds, row = await timed(args.runs, view)
        function_seconds, metrics = await timed(args.runs, lambda: compute_day(pool, DAY, ZONE))
        report_seconds, report = await timed(max(1, args.runs // 2),
                                             lambda: build_report(pool, None, DAY, config, record=False))
        trend_chart(report.trend[:2], title="warm-up")  # matplotlib's import and fonts, once per process

        async def chart() -> bytes:
            return trend_chart(report.trend, title=f"Last 14 days to {DAY}")

        chart_seconds, png = await timed(args.runs, chart)
    finally:
        await pool.close()
    assert row is not None and int(row["received"]) == metrics.received
    return {"facts": dict(facts), "view": view_seconds, "function": function_seconds, "report": report_seconds,
            "chart": chart_seconds, "metrics": metrics.model_dump(), "gaps": len(report.kb_gaps),
            "trend_days": len(report.trend), "png_bytes": len(png)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"cx_bench_daily_{args.cases}_{args.days}_{args.seed}"
    spec = {"bench": "daily_report", "cases": args.cases, "days": args.days, "seed": args.seed}
    day_end = datetime.combine(DAY + timedelta(days=1), clock(), ZONE).astimezone(UTC)
    async with scratch_database(name, spec, lambda dsn: build(dsn, args, day_end), keep=args.keep,
                                keep_dir="cx-bench-daily") as scratch:
        measured = await measure(scratch.dsn, args)
    computation = statistics.median(measured["view"])
    return {
        "cases": measured["facts"]["cases"],
        "status_moves": measured["facts"]["moves"],
        "reviews": measured["facts"]["reviews"],
        "drafts": measured["facts"]["drafts"],
        "llm_usage_rows": measured["facts"]["usage"],
        "cases_size": measured["facts"]["size"],
        "day": DAY.isoformat(),
        "timezone": ZONE.key,
        "view_median_seconds": round(computation, 3),
        "view_run_seconds": [round(s, 3) for s in measured["view"]],
        "compute_day_median_seconds": round(statistics.median(measured["function"]), 3),
        "report_median_seconds": round(statistics.median(measured["report"]), 3),
        "report_run_seconds": [round(s, 3) for s in measured["report"]],
        "chart_median_seconds": round(statistics.median(measured["chart"]), 3),
        "chart_run_seconds": [round(s, 3) for s in measured["chart"]],
        "target_seconds": TARGET_SECONDS,
        "chart_target_seconds": CHART_TARGET_SECONDS,
        "under_target": max(computation, statistics.median(measured["report"])) < TARGET_SECONDS
        and statistics.median(measured["chart"]) < CHART_TARGET_SECONDS,
        "metrics": measured["metrics"],
        "kb_gaps": measured["gaps"],
        "trend_days": measured["trend_days"],
        "png_bytes": measured["png_bytes"],
        "build_seconds": round(scratch.seconds, 1),
        "database_reused": scratch.reused,
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database (named after --cases, --days, --seed) and reuse it next time")
    args = parser.parse_args()
    if args.cases < 1000 or args.days < 14 or args.runs < 1:
        parser.error("need --cases >= 1000, --days >= 14 and --runs >= 1")
    configure_logging("warning", "console")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, default=str))
        return
    for key, value in result.items():
        print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
