"""`cx run` as a whole: roles, Slack Socket Mode against the fake, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal

from tests.cli_runner import CX, ROOT, cx_env
from tests.fakes.slack import FakeSlack
from tests.support.net import free_port, healthz


async def test_cx_run_connects_socket_mode_and_drains_on_sigterm(dsn):
    port = free_port()
    async with FakeSlack() as slack:
        env = cx_env(
            DATABASE_URL=dsn,
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_APP_TOKEN="xapp-test",
            SLACK_API_URL=slack.url + "/api/",
        )
        proc = await asyncio.create_subprocess_exec(
            *CX, "run", "--roles", "web,worker,scheduler,slack", "--port", str(port),
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            body = await healthz(port, lambda b: b.get("slack", {}).get("connected"))
            assert body["roles"] == ["web", "worker", "scheduler", "slack"]
            await slack.wait_connected()
            assert slack.calls("apps.connections.open"), "Socket Mode asked for its WebSocket URL"
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in output.decode().splitlines() if line.startswith("{")]
    assert events.index("slack.connected") < events.index("cx.running") < events.index("cx.draining")
    assert events[-1] == "cx.stopped"


async def test_unknown_roles_are_a_usage_error(dsn):
    proc = await asyncio.create_subprocess_exec(
        *CX, "run", "--roles", "web,cron", env=cx_env(DATABASE_URL=dsn), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "unknown role 'cron'" in err.decode()


async def test_a_worker_process_serves_its_own_job_metrics_on_metrics_port(dsn):
    """A worker without the web role counts the jobs it runs; METRICS_PORT is where Prometheus reads them."""
    import aiohttp
    import asyncpg

    from db import jobs
    from pipelines.jobs import JobName

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *CX, "run", "--roles", "worker", env=cx_env(DATABASE_URL=dsn, METRICS_PORT=str(port)), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    ran = f'cx_jobs_total{{job_name="{JobName.PRUNE}",outcome="ok"}} 1.0'
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await jobs.enqueue(conn, JobName.PRUNE, b"{}")
        finally:
            await conn.close()
        body = ""
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        body = await response.text()
                except aiohttp.ClientError:
                    pass
                if ran in body:
                    break
                await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 404, "only /metrics: the web role serves the rest"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert ran in body, body[-2000:]
