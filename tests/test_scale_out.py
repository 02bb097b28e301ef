"""Scaling out: two web, two worker and two scheduler processes (real `cx run`s) on one database,
under a load that sends every request to both web processes. Nothing is stored, triaged, drafted,
carded or scheduled twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from email.message import EmailMessage

import asyncpg
import pytest
import yaml
from typer.testing import CliRunner

from bot.cli.main import app
from bot.process import Role, parse_roles
from pipelines.jobs import JobName
from tests.cli_runner import ROOT
from tests.fakes.gmail import FakeGmail
from tests.support.net import free_port
from tests.support.processes import (
    CxProcess,
    audit,
    process_env,
    seed_triage_model,
    send_load,
    stop_all,
    wait_queue_empty,
    wait_triaged,
)

REQUESTS = 240
POLL_SECONDS = 5


def inbox_mail(n: int) -> bytes:
    m = EmailMessage()
    m["From"] = f"mailer{n}@example.net"
    m["To"] = "support@example.com"
    m["Subject"] = f"Card question {n}"
    m["Message-ID"] = f"<scale{n}@mail.example.net>"
    m.set_content(f"My card has not arrived yet ({n}).")
    return bytes(m)


@pytest.mark.timeout(150)
async def test_two_of_each_role_on_one_database_do_everything_once(dsn, slack, tmp_path):
    await seed_triage_model(dsn)
    token = tmp_path / "token.json"
    token.write_text(json.dumps({"token": "t", "refresh_token": "r", "client_id": "c", "client_secret": "s",
                                 "expiry": "2099-01-01T00:00:00Z"}))
    async with FakeGmail() as gmail:
        for n in range(3):
            gmail.add_message(inbox_mail(n))
        env = process_env(
            dsn, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.url + "/api/", SLACK_REVIEW_CHANNEL="C0REVIEW",
            SLACK_ALERTS_CHANNEL="C0ALERTS", GMAIL_TOKEN_FILE=str(token), GMAIL_API_URL=gmail.url,
            SUPPORT_EMAIL="support@example.com", GMAIL_POLL_SECONDS=str(POLL_SECONDS), WORKER_CONCURRENCY="4",
        )
        webs = [CxProcess("web", env, tmp_path, free_port()) for _ in range(2)]
        workers = [CxProcess("worker", env, tmp_path) for _ in range(2)]
        schedulers = [CxProcess("scheduler", env, tmp_path) for _ in range(2)]
        everyone = [*webs, *workers, *schedulers]
        try:
            for process in everyone:
                await process.start()
            await asyncio.gather(*(p.running(60) for p in everyone))
            scheduling_from = time.monotonic()
            # Every request goes to both web processes at about the same moment: the second copy
            # must find the first's case, whichever process stored it.
            load = await send_load([w.url for w in webs], "scale", rate=80, count=REQUESTS, copies=2)
            await wait_triaged(dsn, "scale", REQUESTS, timeout=60)
            # At least three polling periods with both schedulers ticking.
            await asyncio.sleep(max(0.0, scheduling_from + 3.5 * POLL_SECONDS - time.monotonic()))
            await wait_queue_empty(dsn, [JobName.DRAFT, JobName.REVIEW_CARD, JobName.URGENT_ALERT], timeout=30)
        finally:
            await stop_all(everyone)
        result = await audit(dsn, "scale", load.accepted)
        conn = await asyncpg.connect(dsn)
        try:
            periods = await conn.fetch("SELECT period_key FROM scheduled_runs WHERE job_name = $1",
                                       JobName.GMAIL_SYNC.value)
            sync_runs = await conn.fetch(
                "SELECT job_id, count(*) AS n FROM pgqueuer_log WHERE entrypoint = $1 AND status = 'successful'"
                " GROUP BY job_id", JobName.GMAIL_SYNC.value)
            sync_left = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1",
                                            JobName.GMAIL_SYNC.value)
            email_cases = await conn.fetchval("SELECT count(*) FROM cases WHERE channel = 'email'")
            cards = await conn.fetchval("SELECT count(*) FROM slack_messages WHERE purpose = 'review_card'")
            drafted = await conn.fetchval("SELECT count(DISTINCT case_id) FROM case_drafts")
        finally:
            await conn.close()

    # Intake: each request's two copies made one case, the same one both web processes answered with.
    assert load.gave_up == [] and load.case_mismatches == []
    assert load.statuses["202"] == REQUESTS and load.statuses["200"] == REQUESTS, load.statuses
    assert len(load.accepted) == result.cases == REQUESTS
    assert (result.lost, result.wrong_case, result.duplicated) == ([], [], 0)
    # Work: triaged once, drafted at most once, one card and one reply per case at most.
    assert (result.untriaged, result.triaged_twice, result.triage_successes_over_one) == (0, 0, 0)
    assert (result.drafts_over_one, result.cards_over_one, result.outbox_over_one) == (0, 0, 0)
    assert drafted > 0, "some cases went to drafting (the duplicate-draft check saw drafts)"
    posted = [m for m in slack.messages if m["channel"] == "C0REVIEW" and not m["thread_ts"]]
    assert cards > 0 and len(posted) == cards, "every card posted to Slack is the one recorded, none twice"
    # Both workers took part.
    done_by = Counter(w.log_path.name for w in workers for e in w.events() if e.get("event") == "job.done")
    assert len(done_by) == 2 and min(done_by.values()) > 0, done_by
    # Scheduling: both schedulers ticked every period; each period was enqueued once and ran once.
    ticks = [e for s in schedulers for e in s.events()
             if e.get("event") == "scheduler.tick" and e.get("job") == JobName.GMAIL_SYNC.value]
    won = Counter(str(t["period"]) for t in ticks if t["enqueued"])
    assert len(periods) >= 3 and set(won) == {r["period_key"] for r in periods}
    assert set(won.values()) == {1}, "one scheduler enqueued each period"
    assert any(not t["enqueued"] for t in ticks), "the other scheduler ticked too and found the period taken"
    assert all(r["n"] == 1 for r in sync_runs) and len(sync_runs) + sync_left == len(periods)
    assert email_cases == 3, "three inbox messages, synced by several runs, are three cases"


def _roles_of(command: list[str]) -> list[Role]:
    assert command[:2] == ["cx", "run"] and command[2] == "--roles", command
    return parse_roles(command[3])  # raises UnknownRole on a role `cx run` would refuse


def _cli_knows(*words: str) -> bool:
    return CliRunner().invoke(app, [*words, "--help"]).exit_code == 0


def test_compose_runs_two_web_two_workers_a_scheduler_and_slack_on_one_database():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    databases = [name for name, s in services.items() if "postgres" in s.get("image", "") or "pgvector" in s.get("image", "")]
    assert databases == ["db"] and services["db"]["image"] == "pgvector/pgvector:pg18"
    assert services["migrate"]["command"] == ["cx", "db", "migrate"] and _cli_knows("db", "migrate")
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    runs = {name: s for name, s in services.items() if s.get("command", [])[:2] == ["cx", "run"]}
    roles = {name: _roles_of(s["command"]) for name, s in runs.items()}
    replicas = {name: s.get("deploy", {}).get("replicas", 1) for name, s in runs.items()}
    assert roles == {"web": [Role.WEB], "worker": [Role.WORKER], "scheduler": [Role.SCHEDULER], "slack": [Role.SLACK]}
    assert replicas == {"web": 2, "worker": 2, "scheduler": 1, "slack": 1}
    for name, service in {**runs, "migrate": services["migrate"]}.items():
        assert service["environment"]["DATABASE_URL"] == "postgresql://cx:cx@db:5432/cx", name
    for name, service in runs.items():
        assert service["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}, name
    assert services["web"]["healthcheck"]["test"][-1].endswith("/healthz', timeout=3)")
    assert (ROOT / "Dockerfile").exists() and services["web"]["build"] == "."


def test_the_procfile_names_real_roles_and_web_binds_port():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert set(lines) == {"release", "web", "worker", "scheduler", "slack"}
    assert lines["release"] == "cx db migrate"
    # No --port on the web line: `cx run` binds $PORT, as Heroku-style platforms expect.
    assert "--port" not in lines["web"]
    default_web_roles = lines["web"].split("${WEB_ROLES:-")[1].rstrip("}")
    assert parse_roles(default_web_roles) == [Role.WEB, Role.WORKER, Role.SCHEDULER, Role.SLACK]
    for kind in ("worker", "scheduler", "slack"):
        assert _roles_of(lines[kind].split()) == [Role(kind)]
