from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.runtime.metrics import Metrics
from bot.runtime.scheduler import Schedule, Scheduler, local_day
from bot.runtime.worker import Worker
from db import jobs
from db.pool import transaction
from tests.cli_runner import ROOT
from tests.job_worker import EFFECT_JOB


async def wait_until(predicate, timeout: float = 20.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


async def queue_rows(pool):
    async with pool.acquire() as conn:
        return await jobs.list_jobs(conn, limit=100)


async def test_a_job_commits_and_rolls_back_with_its_transaction(pool):
    with pytest.raises(RuntimeError):
        async with transaction(pool) as conn:
            await jobs.enqueue(conn, "demo.job", b"{}")
            raise RuntimeError("the state change failed")
    assert await queue_rows(pool) == []
    async with transaction(pool) as conn:
        job_id = await jobs.enqueue(conn, "demo.job", b"{}")
    assert [j.id for j in await queue_rows(pool)] == [job_id]


async def test_a_dedupe_key_makes_the_second_enqueue_a_no_op(pool):
    async with pool.acquire() as conn:
        first = await jobs.enqueue(conn, "demo.job", b"{}", dedupe_key="case-1:triage")
        second = await jobs.enqueue(conn, "demo.job", b"{}", dedupe_key="case-1:triage")
    assert first is not None and second is None
    assert len(await queue_rows(pool)) == 1


async def test_scheduled_ticks_enqueue_one_job_per_period_across_replicas(pool, make_settings):
    settings = make_settings()
    schedule = Schedule("demo.daily", CronTrigger(hour=3), local_day(ZoneInfo("Europe/Paris")))
    replicas = [Scheduler(pool, Metrics(), settings.zone, [schedule]) for _ in range(3)]
    at = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    outcomes = await asyncio.gather(*(r.tick(schedule, at) for r in replicas))
    assert sorted(outcomes) == [False, False, True]
    # The same period after the job ran and left the queue still counts as done.
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM pgqueuer")
    assert await replicas[0].tick(schedule, at) is False
    next_day = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    assert await replicas[1].tick(schedule, next_day) is True
    rows = await queue_rows(pool)
    assert [r.dedupe_key for r in rows] == ["demo.daily:2026-11-23"]


async def test_failures_retry_with_backoff_then_succeed(pool, make_settings):
    settings = make_settings(job_retry_base_seconds=0.3, job_max_attempts=5)
    calls: list[float] = []

    async def flaky(payload):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("upstream not ready")

    worker = Worker(pool, settings, Metrics(), {"demo.flaky": flaky})
    async with pool.acquire() as conn:
        await jobs.enqueue(conn, "demo.flaky", b"{}")
    await worker.start()
    try:
        await wait_until(lambda: _empty(pool))
    finally:
        await worker.drain(5)
    assert len(calls) == 3
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert gaps[1] > gaps[0] * 1.3, f"backoff should grow: {gaps}"


async def _empty(pool):
    return await queue_rows(pool) == []


async def test_exhausted_jobs_stay_visible_and_can_be_retried(pool, make_settings):
    settings = make_settings(job_retry_base_seconds=0.02, job_max_attempts=2)
    attempts = []
    fail = True

    async def broken(payload):
        attempts.append(payload)
        if fail:
            raise ValueError("the payload names no case")

    metrics = Metrics()
    worker = Worker(pool, settings, metrics, {"demo.broken": broken})
    async with pool.acquire() as conn:
        await jobs.enqueue(conn, "demo.broken", b'{"n": 1}')
    await worker.start()
    try:
        async def failed():
            async with pool.acquire() as conn:
                return await jobs.list_jobs(conn, status="failed")

        [held] = await wait_until(failed)
        assert held.entrypoint == "demo.broken"
        assert "the payload names no case" in (held.last_error or "")
        assert len(attempts) == 3  # the first run plus max_attempts retries
        assert metrics.jobs.labels("demo.broken", "error")._value.get() == 3

        fail = False
        async with pool.acquire() as conn:
            await jobs.retry_failed(conn, held.id)
            with pytest.raises(jobs.JobNotFailed):
                await jobs.retry_failed(conn, held.id)
        await wait_until(lambda: _empty(pool))
        assert len(attempts) == 4
    finally:
        await worker.drain(5)


async def test_retrying_an_unknown_job_is_refused(pool):
    async with pool.acquire() as conn:
        with pytest.raises(jobs.JobNotFailed, match="there is no job 424242"):
            await jobs.retry_failed(conn, 424242)


def _start_worker(dsn: str, log_path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.job_worker", dsn],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LOG_FORMAT": "json"},
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}: {log_path.read_text()}")
        if "worker ready" in log_path.read_text():
            return proc
        time.sleep(0.05)
    raise AssertionError("worker did not start")


async def test_a_job_killed_mid_run_completes_exactly_once_after_restart(pool, dsn, tmp_path):
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE test_job_starts (key text, at timestamptz DEFAULT now())")
        await conn.execute("CREATE TABLE test_job_effects (key text PRIMARY KEY)")
        await jobs.enqueue(conn, EFFECT_JOB, json.dumps({"key": "k1"}).encode())

    first = _start_worker(dsn, tmp_path / "first.log")
    try:
        async def started():
            async with pool.acquire() as conn:
                return await conn.fetchval("SELECT count(*) FROM test_job_starts") == 1

        await wait_until(started)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM test_job_effects") == 0
        assert await conn.fetchval("SELECT status::text FROM pgqueuer") == "picked"

    second = _start_worker(dsn, tmp_path / "second.log")
    try:
        await wait_until(lambda: _empty(pool), timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM test_job_effects") == 1
        assert await conn.fetchval("SELECT count(*) FROM test_job_starts") == 2
        statuses = await conn.fetch(
            "SELECT status::text AS status FROM pgqueuer_log WHERE entrypoint = $1 AND status <> 'queued' AND status <> 'picked'",
            EFFECT_JOB,
        )
    assert [r["status"] for r in statuses] == ["successful"]
