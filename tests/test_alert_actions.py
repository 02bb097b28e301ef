"""Acknowledge, Create Jira and Resolve on an alert, through Bolt: real payload shapes dispatched to
our listeners, the queued jobs run as the worker runs them, the real slack_sdk client against the
fake Web API and the real `jira` client against the fake Jira. The review card's rules hold: queued
before the ack, a redelivery dropped, reviewers only, one winner of two at once."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from bot.slack.app import build_slack_app
from handlers.alert_card import AlertButton
from pipelines.adapters.jira_tracker import JiraTracker
from pipelines.jobs import AlertAction, AlertActionRequest, AlertJob, JobName
from pipelines.ports import AlertIssue, IssueRef
from tests.fakes.jira import FakeJira
from tests.fakes.slack import FakeSlack
from tests.support.alerts import ERROR_CODE_SIGNAL, VOLUME_SIGNAL, CaseSpec, alert_row, make_alert
from tests.support.cases import jobs_queued
from tests.support.slack import REVIEWERS

ALERTS = "C0ALERTS"
CREATE = "/rest/api/2/issue"
HOSTILE = "{noformat} *bold* [click|http://evil.example] <!channel>"


def settings_for(jira: FakeJira | None = None) -> Settings:
    extra: dict[str, Any] = {}
    if jira is not None:
        extra = {"jira_url": jira.url, "jira_email": "bot@example.com", "jira_api_token": "token"}
    return Settings(_env_file=None, slack_alerts_channel=ALERTS, slack_review_channel="C0REVIEW",
                    slack_reviewer_group=REVIEWERS, slack_bot_token="xoxb-test", **extra)


@pytest.fixture
async def jira() -> AsyncIterator[FakeJira]:
    async with FakeJira(projects=("SUP",)) as server:
        yield server


@pytest.fixture
async def make_deps(pool, slack: FakeSlack) -> AsyncIterator[Callable[[FakeJira | None], Deps]]:
    """One worker's collaborators; with a fake Jira, a Jira tracker of its own (as each worker process has)."""
    trackers: list[JiraTracker] = []

    def make(jira: FakeJira | None) -> Deps:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
        tracker = None
        if jira is not None:
            tracker = JiraTracker(jira.url, "bot@example.com", "token", "SUP")
            trackers.append(tracker)
        return with_slack(Deps(settings=settings_for(jira), pool=pool, metrics=Metrics()), client, tracker)

    yield make
    for tracker in trackers:
        await tracker.close()


@pytest.fixture
def deps(make_deps: Callable[[FakeJira | None], Deps], jira: FakeJira) -> Deps:
    return make_deps(jira)


def slack_app(deps: Deps) -> AsyncApp:
    assert deps.services is not None and deps.slack is not None
    return build_slack_app(deps.services, deps.slack)


async def dispatch(deps: Deps, body: dict[str, Any], app: AsyncApp | None = None) -> float:
    """Deliver the payload to the app (one process's, or a new one) as Socket Mode would; returns how
    long the ack took."""
    app = app or slack_app(deps)
    started = time.monotonic()
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    assert response.status == 200
    return time.monotonic() - started


async def queued_clicks(deps: Deps) -> list[bytes]:
    return [json.dumps(p).encode() for name, p in await jobs_queued(deps.pool) if name == JobName.ALERT_ACTION]


async def run_clicks(deps: Deps, *, together: bool = False) -> int:
    """Run the queued click jobs once, as the worker would (one after the other, or all at once)."""
    payloads = await queued_clicks(deps)
    runs = [job_handlers(deps)[JobName.ALERT_ACTION](p) for p in payloads]
    if together:
        await asyncio.gather(*runs)
    else:
        for run in runs:
            await run
    await deps.pool.execute("DELETE FROM pgqueuer WHERE entrypoint = $1", JobName.ALERT_ACTION.value)
    return len(payloads)


async def posted_alert(deps: Deps, slack: FakeSlack, **alert: Any) -> tuple[UUID, dict[str, Any]]:
    made = await make_alert(deps.pool, **alert)
    await job_handlers(deps)[JobName.ALERT_POST](AlertJob(alert_id=made.alert_id).payload())
    return made.alert_id, copy.deepcopy(message(slack))  # as the clicker's client shows it: it goes stale


def message(slack: FakeSlack) -> dict[str, Any]:
    (found,) = [m for m in slack.messages if m["channel"] == ALERTS and m["thread_ts"] is None]
    return found


def button_ids(msg: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]


def status_line(msg: dict[str, Any]) -> str:
    return next(b for b in msg["blocks"] if b.get("block_id") == "incident_status")["elements"][0]["text"]


async def test_acknowledge_by_a_reviewer_is_queued_before_the_ack_and_edits_the_message(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    took = await dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, "U0ALICE"))
    assert took < 3  # Slack's deadline; the listener only queued a job
    [payload] = await queued_clicks(deps)
    request = AlertActionRequest.from_payload(payload)
    assert (request.action, request.reviewer, request.alert_id) == (AlertAction.ACKNOWLEDGE, "U0ALICE", alert_id)
    assert (request.channel, request.ts) == (ALERTS, card["ts"])
    assert (await alert_row(deps.pool, alert_id))["status"] == "open"  # nothing happens until the job runs

    assert await run_clicks(deps) == 1
    row = await alert_row(deps.pool, alert_id)
    assert (row["status"], row["acknowledged_by"]) == ("acknowledged", "U0ALICE")
    assert row["acknowledged_at"] is not None and row["revision"] == row["posted_revision"] == 2
    edited = message(slack)
    assert edited["ts"] == card["ts"] and edited["edited"] is not None
    assert status_line(edited).startswith(":eyes: Acknowledged by <@U0ALICE> <!date^")
    assert button_ids(edited) == [AlertButton.CREATE_JIRA, AlertButton.RESOLVE]
    assert slack.ephemeral == []


async def test_a_non_reviewer_is_refused_and_nothing_changes(deps, slack, jira):
    alert_id, card = await posted_alert(deps, slack)
    before = await alert_row(deps.pool, alert_id)
    for button in AlertButton:
        await dispatch(deps, slack.block_actions(card, button, "U0MALLORY"))
    assert await run_clicks(deps) == 3
    assert [e["user"] for e in slack.ephemeral] == ["U0MALLORY"] * 3
    assert "only reviewers can act on alerts" in slack.ephemeral[0]["text"]
    assert dict(await alert_row(deps.pool, alert_id)) == dict(before)
    assert message(slack)["edited"] is None and jira.issues == {}


async def test_two_acknowledges_at_once_one_wins_and_the_other_is_told_who(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    await asyncio.gather(dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, "U0ALICE")),
                         dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, "U0BOB")))
    assert await run_clicks(deps, together=True) == 2
    row = await alert_row(deps.pool, alert_id)
    winner = row["acknowledged_by"]
    assert winner in ("U0ALICE", "U0BOB") and row["revision"] == 2  # acknowledged once
    (told,) = slack.ephemeral
    assert told["user"] == ({"U0ALICE", "U0BOB"} - {winner}).pop()
    assert told["text"].startswith(f"<@{winner}> already acknowledged this alert at <!date^")


async def test_create_jira_clicked_twice_at_once_by_two_reviewers_yields_one_issue(pool, slack, jira, make_deps):
    # Two workers, each with its own Jira client: only the claim in the database keeps them to one issue.
    first, second = make_deps(jira), make_deps(jira)
    alert_id, card = await posted_alert(first, slack, signals=[VOLUME_SIGNAL, ERROR_CODE_SIGNAL])
    await asyncio.gather(dispatch(first, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE")),
                         dispatch(second, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0BOB")))
    payloads = await queued_clicks(first)
    assert len(payloads) == 2
    # The first search Jira answers is slow: without the claim, the other worker would search, find
    # nothing and file a second issue meanwhile.
    jira.hang_next(0.5, only="GET /rest/api/2/search/jql", handled=True)
    await asyncio.gather(job_handlers(first)[JobName.ALERT_ACTION](payloads[0]),
                         job_handlers(second)[JobName.ALERT_ACTION](payloads[1]))

    (issue,) = jira.issues.values()
    assert len(jira.requests_to(CREATE, "POST")) == 1
    row = await alert_row(pool, alert_id)
    assert row["jira_issue_key"] == issue["key"] == "SUP-1"
    filer = json.loads(row["metadata"])["jira_claim"]
    assert filer in ("U0ALICE", "U0BOB")
    (told,) = slack.ephemeral
    assert told["user"] == ({"U0ALICE", "U0BOB"} - {filer}).pop()
    assert f"<@{filer}> already" in told["text"] and "Jira issue for this alert" in told["text"]
    shown = message(slack)
    assert f"Jira <{jira.url}/browse/SUP-1|SUP-1>" in status_line(shown)
    assert AlertButton.CREATE_JIRA not in button_ids(shown)
    assert row["posted_revision"] == row["revision"] == 2


async def test_the_jira_issue_lists_the_cases_and_what_fired(deps, slack, jira):
    cases = [CaseSpec(f"Refund {i} {HOSTILE}", f"c{i}@example.com", f"Customer {i}") for i in range(3)]
    made = await make_alert(deps.pool, cases=cases, title=f"Refunds spiking {HOSTILE}", hypothesis="A bad deploy.",
                            signals=[VOLUME_SIGNAL, ERROR_CODE_SIGNAL], severity="critical")
    await job_handlers(deps)[JobName.ALERT_POST](AlertJob(alert_id=made.alert_id).payload())
    await dispatch(deps, slack.block_actions(message(slack), AlertButton.CREATE_JIRA, "U0BOB"))
    await run_clicks(deps)

    (fields,) = [r.json["fields"] for r in jira.requests_to(CREATE, "POST")]
    assert fields["summary"].startswith("[critical] Refunds spiking {noformat} *bold*")
    assert fields["priority"] == {"name": "Highest"}
    assert fields["labels"] == ["cx-alert", "volume", "billing", f"cx-alert-{made.alert_id}"]
    description = fields["description"]
    for case_id, short_id in zip(made.case_ids, made.short_ids):
        assert re.search(rf"CX-{short_id}\s+{case_id}\s+Refund", description)
    assert "billing / refund_request: 14 cases against 1.2 expected (z 8.3), over the last 60 min" in description
    assert "ERR_AUTH_1042: 9 cases against 0.4 expected" in description
    assert "*Root-cause hypothesis (AI, unverified)*\n{noformat}\nA bad deploy.\n{noformat}" in description
    assert "Filed from Slack by reviewer U0BOB" in description
    # Customer text cannot end a {noformat} block early: only our own tags remain.
    headings = description.count("\n*")
    assert len(re.findall(r"\{noformat", description, re.I)) == 2 * headings
    assert len(description) <= 32_767
    assert slack.ephemeral == []


async def test_create_jira_again_after_it_was_filed_files_nothing(deps, slack, jira):
    alert_id, card = await posted_alert(deps, slack)
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE"))
    await run_clicks(deps)
    # A stale copy of the message still has the button: a later click learns who filed it.
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0BOB"))
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE"))
    await run_clicks(deps)
    assert list(jira.issues) == ["SUP-1"]
    (told,) = slack.ephemeral
    assert told["user"] == "U0BOB" and "<@U0ALICE> already created a Jira issue for this alert (SUP-1)" in told["text"]


async def test_create_jira_without_jira_configured_says_so_and_changes_nothing(pool, slack, make_deps):
    deps = make_deps(None)
    alert_id, card = await posted_alert(deps, slack)
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE"))
    await run_clicks(deps)
    (told,) = slack.ephemeral
    assert "Jira is not configured" in told["text"]
    row = await alert_row(pool, alert_id)
    assert row["jira_issue_key"] is None and row["revision"] == 1 and json.loads(row["metadata"]) == {}


async def test_jira_refusing_the_issue_releases_the_claim_for_another_try(deps, slack, jira):
    alert_id, card = await posted_alert(deps, slack)
    jira.fail_next(400, only=f"POST {CREATE}")
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE"))
    await run_clicks(deps)
    (told,) = slack.ephemeral
    assert told["text"].startswith(":warning: Jira refused the issue: Jira answered 400")
    assert json.loads((await alert_row(deps.pool, alert_id))["metadata"]) == {}
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0BOB"))
    await run_clicks(deps)
    assert (await alert_row(deps.pool, alert_id))["jira_issue_key"] == "SUP-1"


async def test_a_jira_outage_retries_the_job_and_the_retry_files_once(deps, slack, jira):
    alert_id, card = await posted_alert(deps, slack)
    await dispatch(deps, slack.block_actions(card, AlertButton.CREATE_JIRA, "U0ALICE"))
    [payload] = await queued_clicks(deps)
    jira.fail_next(503, only=f"POST {CREATE}")
    with pytest.raises(Exception, match="503"):
        await job_handlers(deps)[JobName.ALERT_ACTION](payload)
    assert json.loads((await alert_row(deps.pool, alert_id))["metadata"]) == {"jira_claim": "U0ALICE"}
    await job_handlers(deps)[JobName.ALERT_ACTION](payload)  # the worker's retry
    assert list(jira.issues) == ["SUP-1"] and slack.ephemeral == []
    assert (await alert_row(deps.pool, alert_id))["jira_issue_key"] == "SUP-1"


async def test_resolve_by_a_reviewer_resolves_and_spends_the_buttons(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    await dispatch(deps, slack.block_actions(card, AlertButton.RESOLVE, "U0BOB"))
    await run_clicks(deps)
    row = await alert_row(deps.pool, alert_id)
    assert (row["status"], row["resolved_by"]) == ("resolved", "U0BOB") and row["resolved_at"] is not None
    shown = message(slack)
    assert status_line(shown).startswith(":white_check_mark: Resolved by <@U0BOB> <!date^")
    assert button_ids(shown) == [AlertButton.CREATE_JIRA]
    # Acknowledge from a stale copy of the message: too late, and the clicker is told by whom.
    await dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, "U0ALICE"))
    await run_clicks(deps)
    assert (await alert_row(deps.pool, alert_id))["status"] == "resolved"
    (told,) = slack.ephemeral
    assert told["user"] == "U0ALICE" and "<@U0BOB> already resolved this alert" in told["text"]


async def test_a_click_on_an_alert_that_resolved_itself_says_so(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    await deps.pool.execute("UPDATE proactive_alerts SET status = 'resolved', resolved_by = 'auto', "
                            "resolved_at = now(), revision = revision + 1 WHERE alert_id = $1", alert_id)
    await dispatch(deps, slack.block_actions(card, AlertButton.RESOLVE, "U0ALICE"))
    await run_clicks(deps)
    (told,) = slack.ephemeral
    assert "resolved this alert on its own" in told["text"]
    assert "Resolved automatically" in status_line(message(slack))  # the stale message caught up too


async def test_a_redelivered_click_is_dropped(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    body = slack.block_actions(card, AlertButton.RESOLVE, "U0ALICE", action_ts="1700000123.000100")
    await dispatch(deps, body)
    await dispatch(deps, body)  # Slack redelivers an envelope it saw no ack for
    assert await run_clicks(deps) == 1
    assert (await alert_row(deps.pool, alert_id))["revision"] == 2 and slack.ephemeral == []


async def test_fifty_clicks_at_once_are_all_queued_within_slacks_deadline(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    users = [f"U0R{i:03d}" for i in range(50)]
    app = slack_app(deps)  # one process's app: building one per click would time the builds
    took = await asyncio.gather(*(dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, u), app)
                                  for u in users))
    assert max(took) < 3
    assert len(await queued_clicks(deps)) == 50


async def test_a_failed_message_edit_after_a_click_queues_the_post_job_not_the_click(deps, slack):
    alert_id, card = await posted_alert(deps, slack)
    await dispatch(deps, slack.block_actions(card, AlertButton.ACKNOWLEDGE, "U0ALICE"))
    slack.fail_next("chat.update", "internal_error")
    assert await run_clicks(deps) == 1  # did not raise
    assert (await alert_row(deps.pool, alert_id))["status"] == "acknowledged" and slack.ephemeral == []
    assert [p for name, p in await jobs_queued(deps.pool) if name == JobName.ALERT_POST] == [
        {"alert_id": str(alert_id), "remind": False}]
    await job_handlers(deps)[JobName.ALERT_POST](AlertJob(alert_id=alert_id).payload())
    assert "Acknowledged by <@U0ALICE>" in status_line(message(slack))


async def test_the_jira_tracker_files_one_issue_per_alert_however_often_asked(jira):
    alert_id = UUID("55555555-5555-4555-8555-555555555555")
    issue = AlertIssue(alert_id=alert_id, summary="[high] Refunds\nspiking " + "x" * 400,
                       sections=(("Alert", "Kind: volume"), ("Cases (1)", "CX-1001  " + HOSTILE + "{NoFormat:x}")),
                       priority="high", labels=("cx-alert", "volume", "two words"))
    async with JiraTracker(jira.url, "bot@example.com", "token", "SUP") as tracker:
        first = await tracker.file_alert(issue)
    async with JiraTracker(jira.url, "bot@example.com", "token", "SUP") as retried:  # as after a restart
        again = await retried.file_alert(issue)
    assert first == again == IssueRef("SUP-1", f"{jira.url}/browse/SUP-1")
    (fields,) = [r.json["fields"] for r in jira.requests_to(CREATE, "POST")]
    assert fields["labels"] == ["cx-alert", "volume", "two-words", f"cx-alert-{alert_id}"]
    assert "\n" not in fields["summary"] and fields["summary"].endswith("…") and len(fields["summary"]) <= 255
    assert fields["description"] == (
        f"Raised by CX-Catalyst's proactive detection: alert {alert_id}.\n"
        "\n*Alert*\n{noformat}\nKind: volume\n{noformat}\n"
        "\n*Cases (1)*\n{noformat}\nCX-1001   *bold* [click|http://evil.example] <!channel>\n{noformat}"
    )


def test_an_alert_issue_refuses_an_unknown_priority():
    with pytest.raises(ValueError, match="priority"):
        AlertIssue(alert_id=UUID(int=1), summary="x", sections=(), priority="critical")  # type: ignore[arg-type]
