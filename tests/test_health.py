"""`cx health-check` against local fakes of every service, through the real SDKs."""

from __future__ import annotations

import asyncio
import json

from bot.cli.health import run_checks
from tests.cli_runner import CX, ROOT, cx_env
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gmail import FakeGmail
from tests.fakes.jira import FakeJira
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack


def gmail_token(tmp_path, token: str = "test-token"):
    path = tmp_path / "gmail-token.json"
    path.write_text(json.dumps({
        "token": token, "refresh_token": "r", "client_id": "c", "client_secret": "s",
        "expiry": "2099-01-01T00:00:00Z",  # a fresh access token: no refresh, which would go to Google
    }))
    return path


def service_settings(slack, anthropic, openai, gmail, jira, token_file, *, key="sk-test"):
    return {
        "slack_bot_token": "xoxb-test",
        "slack_api_url": slack.url + "/api/",
        "anthropic_api_key": key,
        "anthropic_base_url": anthropic.url,
        "openai_api_key": key,
        "openai_base_url": openai.url + "/v1",
        "gmail_token_file": token_file,
        "gmail_api_url": gmail.url,
        "jira_url": jira.url,
        "jira_email": "bot@example.com",
        "jira_api_token": "token" if key != "bad-key" else "wrong",
    }


async def test_every_configured_service_is_reached_through_its_sdk(make_settings, tmp_path):
    async with FakeSlack() as slack, FakeAnthropic() as anthropic, FakeOpenAI() as openai, \
            FakeGmail() as gmail, FakeJira() as jira:
        settings = make_settings(**service_settings(slack, anthropic, openai, gmail, jira, gmail_token(tmp_path)))
        checks = {c.name: c for c in await run_checks(settings)}
        assert set(checks) == {"database", "pgvector", "triage", "slack", "anthropic", "openai", "gmail", "jira"}
        assert all(c.configured and c.ok for c in checks.values()), checks
        assert "support@example.com" in checks["gmail"].detail
        assert slack.calls("auth.test") and anthropic.requests_to("/v1/models")
        assert openai.requests_to("/v1/models") and jira.requests_to("/rest/api/2/myself")


async def test_bad_credentials_are_reported_per_service(make_settings, tmp_path):
    async with FakeSlack() as slack, FakeAnthropic() as anthropic, FakeOpenAI() as openai, \
            FakeGmail() as gmail, FakeJira() as jira:
        values = service_settings(slack, anthropic, openai, gmail, jira, gmail_token(tmp_path, "invalid"), key="bad-key")
        values["slack_bot_token"] = "xoxb-invalid"
        checks = {c.name: c for c in await run_checks(make_settings(**values))}
    for name in ("slack", "anthropic", "openai", "gmail", "jira"):
        assert checks[name].configured and checks[name].ok is False, checks[name]
    assert "invalid_auth" in checks["slack"].detail
    assert checks["database"].ok is True


async def test_an_unreachable_service_fails_the_cli_with_exit_1(dsn, tmp_path):
    async with FakeAnthropic() as anthropic:
        env = cx_env(DATABASE_URL=dsn, ANTHROPIC_API_KEY="bad-key", ANTHROPIC_BASE_URL=anthropic.url)
        proc = await asyncio.create_subprocess_exec(
            *CX, "health-check", "--json", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()
    report = json.loads(out)
    assert report["ok"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["anthropic"]["ok"] is False and by_name["database"]["ok"] is True
    assert by_name["jira"] == {**by_name["jira"], "configured": False, "ok": None}
