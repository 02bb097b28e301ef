"""A critical case's alert in the alerts channel (spec §1 step 3): posted once by its job, stored as
a proactive alert with the case as evidence, escaped and within Slack's limits like the review card,
with a Take it button that works like the card's and leaves the alert showing who took the case."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from bot.slack.app import build_slack_app
from handlers import mrkdwn
from pipelines.intake.webhook import intake_webhook
from pipelines.models import IntakeRequest
from pipelines.triage.step import triage_case
from tests.fakes.slack import FakeSlack
from tests.support.blocks import assert_valid_blocks
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

ALERTS = "C0ALERTS"
HOSTILE = "Ping <!channel> and <@U1>, see <https://x|y> now"


@pytest.fixture
def deps(pool, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, slack_alerts_channel=ALERTS, slack_review_channel="C0REVIEW",
                        slack_reviewer_group=REVIEWERS, slack_bot_token="xoxb-test")
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY), client)


async def critical_case(pool, *, subject: str = HOSTILE * 40, name: str = HOSTILE) -> Any:
    request = IntakeRequest(customer_email="eve@example.com", customer_name=name[:200], subject=subject[:500],
                            description="Someone took money from my account " + HOSTILE * 100)
    case_id = (await intake_webhook(pool, request, replay_key="k-critical")).case_id
    await pool.execute("UPDATE customers SET account_tier = 'enterprise'")
    outcome = await triage_case(pool, ScriptedLocal(0.9, priority="critical"), TAXONOMY, THRESHOLDS, case_id)
    assert outcome is not None and outcome.decision.route == "human_urgent"
    return case_id


async def run_alert_jobs(deps: Deps) -> int:
    rows = await deps.pool.fetch("SELECT id, payload FROM pgqueuer WHERE entrypoint = 'case.urgent_alert'")
    for row in rows:
        await job_handlers(deps)["case.urgent_alert"](bytes(row["payload"]))
    return len(rows)


def alerts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == ALERTS]


async def test_a_critical_case_is_alerted_once_with_its_evidence(deps, slack):
    case_id = await critical_case(deps.pool)
    assert await run_alert_jobs(deps) == 1
    (alert,) = alerts(slack)
    assert_valid_blocks(alert["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    rendered = json.dumps(alert["blocks"]) + alert["text"]
    for markup in ("<!channel>", "<@U1>", "<https://x|y>"):
        assert markup not in rendered
    assert "&lt;!channel&gt;" in rendered
    header = alert["blocks"][0]["text"]["text"]
    short_id = await deps.pool.fetchval("SELECT short_id FROM cases WHERE case_id = $1", case_id)
    assert f"CX-{short_id}" in header and "critical" in header
    facts = json.dumps(alert["blocks"][1])
    assert "eve@example.com" in facts and "enterprise" in facts
    assert "priority is critical" in rendered  # why it is urgent: the route's reason
    [take] = [e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert take["action_id"] == "review_take" and json.loads(take["value"])["case_id"] == str(case_id)

    row = await deps.pool.fetchrow("SELECT alert_id, alert_type, severity, status, fingerprint FROM proactive_alerts")
    assert (row["alert_type"], row["severity"], row["status"]) == ("critical_case", "critical", "open")
    evidence = await deps.pool.fetchval("SELECT evidence_key FROM alert_evidence WHERE alert_id = $1", row["alert_id"])
    assert evidence == f"case:{case_id}"
    message = await deps.pool.fetchrow("SELECT channel_id, ts FROM slack_messages WHERE alert_id = $1",
                                       row["alert_id"])
    assert (message["channel_id"], message["ts"]) == (ALERTS, alert["ts"])

    # The job again (a retry after a crash, a redelivery): still one alert.
    await job_handlers(deps)["case.urgent_alert"](json.dumps({"case_id": str(case_id)}).encode())
    assert len(alerts(slack)) == 1
    assert await deps.pool.fetchval("SELECT count(*) FROM proactive_alerts") == 1


async def test_two_jobs_at_once_post_one_alert(deps, slack):
    case_id = await critical_case(deps.pool)
    payload = json.dumps({"case_id": str(case_id)}).encode()
    await asyncio.gather(*(job_handlers(deps)["case.urgent_alert"](payload) for _ in range(3)))
    assert len(alerts(slack)) == 1
    assert await deps.pool.fetchval("SELECT count(*) FROM proactive_alerts") == 1


async def test_a_late_job_for_a_case_someone_took_posts_nothing(deps, slack):
    case_id = await critical_case(deps.pool)
    await deps.pool.execute("UPDATE cases SET owner_slack_user_id = 'U0ALICE' WHERE case_id = $1", case_id)
    await run_alert_jobs(deps)
    assert alerts(slack) == [] and await deps.pool.fetchval("SELECT count(*) FROM proactive_alerts") == 0


async def test_a_failed_post_stores_nothing_and_the_retry_posts_once(deps, slack):
    await critical_case(deps.pool)
    slack.fail_next("chat.postMessage", "internal_error")
    with pytest.raises(Exception, match="internal_error"):
        await run_alert_jobs(deps)
    assert alerts(slack) == []
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_messages") == 0
    await run_alert_jobs(deps)
    assert len(alerts(slack)) == 1


async def test_take_it_on_the_alert_takes_the_case_and_the_alert_says_who(deps, slack):
    case_id = await critical_case(deps.pool, subject="Fraud on my account", name="Eve")
    await run_alert_jobs(deps)
    (alert,) = alerts(slack)
    assert deps.services is not None
    app = build_slack_app(deps.services, deps.slack)
    click = slack.block_actions(alert, "review_take", "U0ALICE")
    response = await app.async_dispatch(AsyncBoltRequest(body=click, mode="socket_mode"))
    assert response.status == 200
    [payload] = await deps.pool.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'review.action'")
    await job_handlers(deps)["review.action"](bytes(payload["payload"]))
    assert await deps.pool.fetchval("SELECT owner_slack_user_id FROM cases WHERE case_id = $1", case_id) == "U0ALICE"
    (alert,) = alerts(slack)
    assert alert["edited"] is not None
    assert not [b for b in alert["blocks"] if b["type"] == "actions"], "the Take button is spent"
    assert "Taken by <@U0ALICE>" in json.dumps(alert["blocks"])
