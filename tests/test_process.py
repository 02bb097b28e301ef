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
