"""A retention pass over many expired rows, with the desk writing meanwhile.

Builds N expired rows in each of kb_searches, llm_usage and slack_events_seen (and N/10 fresh ones),
then runs `apply_retention` while a writer keeps inserting searches and updating fresh usage rows.
Reports the pass's time and rows/s, the longest single batch (the longest any row stays locked),
and the writer's worst latency: what a worker would feel during the nightly pass.

    python bench/retention.py --rows 100000 [--batch 5000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database  # noqa: E402

from db import retention as retention_db  # noqa: E402
from db.pool import create_pool  # noqa: E402
from db.retention import Kind  # noqa: E402
from pipelines.retention import RetentionPolicy, apply_retention  # noqa: E402

POLICY = RetentionPolicy(search_log=timedelta(days=30), llm_usage=timedelta(days=90), executions=timedelta(days=30),
                         slack_events=timedelta(days=7), job_log=timedelta(days=30))


def builder(rows: int) -> Callable[[str], Awaitable[None]]:
    async def build(dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for age, n in ((100, rows), (1, rows // 10)):
                await conn.execute(
                    "INSERT INTO kb_searches (query, top_score, created_at) SELECT 'my card has not arrived ' || g, "
                    "0.5, now() - make_interval(days => $1::int) - g * interval '1 second' FROM generate_series(1, $2) g",
                    age, n)
                await conn.execute(
                    "INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cost_usd, created_at) "
                    "SELECT CASE WHEN g % 2 = 0 THEN 'triage' ELSE 'draft' END, 'anthropic', 'claude-haiku-4-5', "
                    "900, 200, 0.0019, now() - make_interval(days => $1::int) - g * interval '1 second' "
                    "FROM generate_series(1, $2) g", age, n)
                await conn.execute(
                    "INSERT INTO slack_events_seen (event_id, received_at) SELECT 'Ev' || $1::int || '-' || g, "
                    "now() - make_interval(days => $1::int) - g * interval '1 second' FROM generate_series(1, $2) g",
                    age, n)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    return build


async def writer(pool: asyncpg.Pool, stop: asyncio.Event) -> list[float]:
    """The desk meanwhile: a search logged and a fresh usage row touched, back to back."""
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO kb_searches (query) VALUES ('where is my card')")
            await conn.execute("UPDATE llm_usage SET latency_ms = 1 WHERE usage_id = (SELECT usage_id FROM llm_usage "
                               "WHERE created_at > now() - interval '2 days' ORDER BY random() LIMIT 1)")
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return latencies


async def longest_batch(dsn: str, batch: int) -> float:
    """One more batch of each kind on fresh expired rows, timed: how long a batch holds its locks."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO kb_searches (query, created_at) SELECT 'q' || g, now() - interval '100 days' "
            "FROM generate_series(1, $1) g", batch)
        await conn.execute(
            "INSERT INTO llm_usage (step, provider, model, cost_usd, created_at) SELECT 'triage', 'anthropic', "
            "'claude-haiku-4-5', 0.001, now() - interval '100 days' - g * interval '1 second' "
            "FROM generate_series(1, $1) g", batch)
        cutoff = await retention_db.now(conn) - timedelta(days=95)
        worst = 0.0
        for kind in (Kind.SEARCH_LOG, Kind.LLM_USAGE):
            started = time.perf_counter()
            await retention_db.delete_batch(conn, kind, cutoff, batch)
            worst = max(worst, time.perf_counter() - started)
        return worst
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, object]:
    spec = {"rows": args.rows, "v": 1}
    async with scratch_database("bench_retention", spec, builder(args.rows), keep=False,
                                keep_dir="cx-bench-retention") as scratch:
        pool = await create_pool(scratch.dsn, min_size=2, max_size=4)
        try:
            stop = asyncio.Event()
            probe = asyncio.create_task(writer(pool, stop))
            started = time.perf_counter()
            deleted = await apply_retention(pool, POLICY, batch=args.batch)
            seconds = time.perf_counter() - started
            stop.set()
            latencies = sorted(await probe)
            worst_batch = await longest_batch(scratch.dsn, args.batch)
        finally:
            await pool.close()
    total = sum(deleted.values())
    return {
        "rows_per_kind": args.rows, "batch": args.batch, "deleted": {k.value: n for k, n in deleted.items()},
        "seconds": round(seconds, 2), "rows_per_second": round(total / seconds),
        "longest_batch_seconds": round(worst_batch, 3),
        "writer_ops": len(latencies),
        "writer_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "writer_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="expired rows in each of three tables")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
