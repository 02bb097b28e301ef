"""A worker process for the crash tests: the real Worker, with one job that records its attempts.

Run as: python -m tests.job_worker DSN
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from functools import partial

import asyncpg

from bot.runtime.metrics import Metrics
from bot.runtime.worker import Worker
from bot.settings import load_settings
from db.pool import create_pool, transaction

EFFECT_JOB = "test.effect"


async def effect(pool: asyncpg.Pool, payload: bytes) -> None:
    key = json.loads(payload)["key"]
    async with pool.acquire() as conn:
        starts = await conn.fetchval(
            "INSERT INTO test_job_starts (key) VALUES ($1) RETURNING (SELECT count(*) + 1 FROM test_job_starts WHERE key = $1)",
            key,
        )
    async with transaction(pool) as conn:
        await conn.execute("INSERT INTO test_job_effects (key) VALUES ($1) ON CONFLICT DO NOTHING", key)
        if starts == 1:
            await asyncio.sleep(60)  # the first attempt is killed here, before its commit


async def main(dsn: str) -> None:
    settings = load_settings(_env_file=None, database_url=dsn, job_heartbeat_seconds=1.0)
    pool = await create_pool(dsn)
    worker = Worker(pool, settings, Metrics(), {EFFECT_JOB: partial(effect, pool)})
    await worker.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("worker ready", flush=True)
    await stop.wait()
    await worker.drain(5)
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
