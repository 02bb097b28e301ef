"""Grouping a week of cases (`pipelines.learning.case_groups.group_recent_cases`) at 1M cases a month.

    python bench/case_groups.py [--cases 1000000] [--seed 0] [--keep] [--data-dir DIR] [--json]

Builds the detection bench's desk (bench/detect.py: `--cases` cases over 30 days, 24 taxonomy keys
with 40 Zipf-popular recurring topics each, a quarter one-offs, 384-d vectors at cosine 0.6-0.9
within a topic) in a scratch database (bench/scratch_db.py: on an embedded server of its own, or
DATABASE_URL's; `--keep`: kept in <tmp>/cx-bench-groups and reused), then groups the 7 days before the desk's NOW as the daily steps
do: every case at min_size 3 (KB gaps) and the `defect` category at min_size 5 (bugs), with an
embedder that is never called (every case has its vector).

Reported per grouping: wall and CPU seconds (this process; the database server's apart), the read
of the vectors alone, peak RSS, the groups found, and how they match the generated topics: purity
(share of a group's cases in its main topic), the recurring topics with at least min_size cases in
the week that lead a group, and topics split over two groups or more."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import detect as desk_bench  # bench/detect.py: its desk and how it is loaded
from scratch_db import scratch_database

from bot.runtime.logs import configure_logging
from db import case_groups as groups_db
from db.pool import create_pool
from pipelines.detection.clusters import similarity_for
from pipelines.learning.case_groups import CaseGroup, group_recent_cases

WEEK = timedelta(days=7)
SHAPES = [("all cases, min 3 (KB gaps)", None, 3), ("defect, min 5 (bugs)", frozenset({"defect"}), 5)]


def quality(groups: list[CaseGroup], topic_of: dict[Any, tuple[int, int]], week: list[Any],
            allowed: set[int] | None, min_size: int) -> dict[str, Any]:
    purity, leading = [], Counter()
    for group in groups:
        counts = Counter(topic_of[c] for c in group.case_ids)
        (main, n), = counts.most_common(1)
        purity.append(n / len(group.case_ids))
        if main[1] >= 0:
            leading[main] += 1
    sizes = Counter(topic_of[c] for c in week if topic_of[c][1] >= 0 and (allowed is None or topic_of[c][0] in allowed))
    recurring = {t for t, n in sizes.items() if n >= min_size}
    return {
        "groups": len(groups), "largest": max((len(g.case_ids) for g in groups), default=0),
        "cases_grouped": sum(len(g.case_ids) for g in groups),
        "median_purity": round(statistics.median(purity), 3) if purity else None,
        "groups_at_least_90pct_pure": sum(p >= 0.9 for p in purity),
        "recurring_topics": len(recurring), "recurring_topics_leading_a_group": len(recurring & set(leading)),
        "topics_split": sum(1 for n in leading.values() if n > 1),
    }


async def measure(dsn: str, desk: Any) -> dict[str, Any]:
    pool = await create_pool(dsn, min_size=2, max_size=4)
    until, since = desk_bench.NOW, desk_bench.NOW - WEEK
    topic_of = {cid: (int(k), int(t)) for cid, k, t in zip(desk.case_ids, desk.key, desk.topic, strict=True)}
    keys = desk.keys
    results: dict[str, Any] = {"similarity": similarity_for(desk_bench.MODEL)}
    try:
        week = [r["case_id"] for r in await pool.fetch(
            "SELECT case_id FROM cases WHERE created_at >= $1 AND created_at < $2", since, until)]
        results["cases_in_week"] = len(week)
        for name, categories, min_size in SHAPES:
            embedder = desk_bench.BenchEmbedder()
            started = time.perf_counter()
            async with pool.acquire() as conn:
                read = await groups_db.embedded_cases(conn, since, until, embedder.model,
                                                      sorted(categories) if categories else None)
            read_seconds = time.perf_counter() - started
            rows = len(read.ids)
            del read
            started, cpu = time.perf_counter(), time.process_time()
            groups = await group_recent_cases(pool, embedder, since=since, until=until, min_size=min_size,
                                              categories=categories)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            allowed = None if categories is None else {i for i, key in enumerate(keys) if key[0] in categories}
            results[name] = {
                "cases": rows, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                "read_vectors_seconds": round(read_seconds, 2), "embed_calls": embedder.calls,
                **quality(groups, topic_of, week, allowed, min_size),
            }
    finally:
        await pool.close()
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"cx_bench_groups_{args.cases}_s{args.seed}_v{desk_bench.DATA_VERSION}"
    spec = {"bench": "case_groups", "cases": args.cases, "seed": args.seed, "version": desk_bench.DATA_VERSION}

    async def build(dsn: str) -> None:
        await desk_bench.build(dsn, argparse.Namespace(cases=args.cases, seed=args.seed), lambda m: None)

    async with scratch_database(name, spec, build, keep=args.keep, keep_dir="cx-bench-groups",
                                data_dir=args.data_dir) as scratch:
        measured = await measure(scratch.dsn, desk_bench.make_desk(args.cases, args.seed))
    return {"cases": args.cases, "build_seconds": round(scratch.seconds, 1), "database_reused": scratch.reused,
            **measured}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database in <tmp>/cx-bench-groups and reuse it")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
