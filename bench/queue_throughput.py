"""Durable queue throughput: jobs enqueued in their own transactions, then run by one Worker.

    python bench/queue_throughput.py [--jobs 2000] [--repeat 3] [--json]

Uses a scratch database on the embedded server in a temporary directory (or DATABASE_URL's server).
Reports medians over the repeats: enqueue rate (one transaction per job, as intake does) and
end-to-end run rate (no-op handler, so this is the queue's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.runtime.database import start_embedded, with_database  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from bot.runtime.metrics import Metrics  # noqa: E402
from bot.runtime.worker import Worker  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from db import jobs  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.pool import create_pool, transaction  # noqa: E402


async def one_round(admin_url: str, n: int) -> dict[str, float]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(admin_url, name)
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await conn.close()
        pool = await create_pool(dsn, min_size=4, max_size=8)
        done = asyncio.Event()
        count = 0

        async def noop(payload: bytes) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        async def enqueue_one(i: int) -> None:
            async with transaction(pool) as c:
                await jobs.enqueue(c, "bench.noop", b"{}", dedupe_key=f"bench:{i}")

        started = time.perf_counter()
        for chunk in range(0, n, 8):
            await asyncio.gather(*(enqueue_one(i) for i in range(chunk, min(n, chunk + 8))))
        enqueue_s = time.perf_counter() - started

        settings = load_settings(_env_file=None, database_url=dsn, worker_concurrency=32)
        worker = Worker(pool, settings, Metrics(), {"bench.noop": noop})
        started = time.perf_counter()
        await worker.start()
        await asyncio.wait_for(done.wait(), 300)
        run_s = time.perf_counter() - started
        await worker.drain(10)
        await pool.close()
        return {"enqueue_per_s": n / enqueue_s, "run_per_s": n / run_s}
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    configure_logging("warning", "console")
    if settings.database_url is not None:
        admin_url = settings.database_url.get_secret_value()
    else:
        admin_url = start_embedded(Path(tempfile.mkdtemp(prefix="cx-bench-")))
    rounds = [await one_round(admin_url, args.jobs) for _ in range(args.repeat)]
    result = {
        "jobs": args.jobs,
        "repeat": args.repeat,
        "enqueue_per_s_median": round(statistics.median(r["enqueue_per_s"] for r in rounds), 1),
        "run_per_s_median": round(statistics.median(r["run_per_s"] for r in rounds), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
