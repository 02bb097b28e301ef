"""A proactive alert in Slack: its card is valid Block Kit within Slack's limits whatever the text,
shows what fired with its figures, and is posted once then edited in place as the alert changes;
reminders go to its thread; App Home lists the open alerts and /metrics counts them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import generate_latest
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics, refresh_open_alerts
from bot.settings import Settings
from db.alerts import open_urgent_alert
from handlers import mrkdwn
from handlers.alert_card import (
    ACTIONS_BLOCK_ID,
    AlertButton,
    AlertCard,
    AlertSignal,
    ExampleCase,
    alert_blocks,
    alert_id_of,
    alert_lost_race_text,
    alert_reminder_text,
    alert_text,
)
from handlers.home_views import home_view
from pipelines.detection.posting import Outcome, signal_figures
from pipelines.jobs import AlertJob, JobName
from pipelines.triage.step import triage_case
from tests.fakes.slack import FakeSlack
from tests.support.alerts import (
    ERROR_CODE_SIGNAL,
    METRIC_SIGNAL,
    VOLUME_SIGNAL,
    CaseSpec,
    alert_row,
    bump,
    make_alert,
)
from tests.support.blocks import assert_valid_blocks, text_objects
from tests.support.cases import new_case
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

ALERTS = "C0ALERTS"
ALERT_ID = UUID("44444444-4444-4444-8444-444444444444")
SEEN = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
HOSTILE = ("Hi <!channel> and <!here>, ask <@U123> or see <http://evil|click> now. *bold* _it_ ~gone~ `code` "
           "&amp; & more\nsecond line 🙂👩‍💻 مرحبا بالعالم \u202egnp.exe")
FORGED = ("<!channel>", "<!here>", "<@U123>", "<http://evil|click>")


def make_card(**changes: Any) -> AlertCard:
    card = AlertCard(
        alert_id=ALERT_ID, kind="volume", severity="high", status="open", title="Refund requests spiking",
        first_seen_at=SEEN, last_seen_at=SEEN + timedelta(minutes=20), summary="14 refund requests in an hour.",
        signals=(AlertSignal("volume", signal_figures(VOLUME_SIGNAL)),),
        cases=(ExampleCase(1234, "Refund missing"), ExampleCase(1235, None)), case_count=2,
        customer_count=2, tiers=(("enterprise", 1), ("standard", 1)),
        customers=(("Ada Lovelace", "enterprise"), ("Cy Young", "standard")), quiet_minutes=120,
    )
    return replace(card, **changes)


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def assert_inert(blocks: list[dict[str, Any]], *texts: str) -> None:
    """No text object (nor extra text) carries the hostile markup as Slack would act on it."""
    for shown in [t["text"] for t in text_objects(blocks)] + list(texts):
        for markup in FORGED:
            assert markup not in shown, (markup, shown)


# ---- the card ------------------------------------------------------------------------------------------------


def test_a_signal_is_worded_with_its_figures():
    assert signal_figures(VOLUME_SIGNAL) == (
        "billing / refund_request: 14 cases against 1.2 expected (z 8.3), over the last 60 min")
    assert signal_figures(METRIC_SIGNAL) == (
        "api_error_rate on api-gateway: 7.2% against a threshold of 5%, over the last 60 min")
    assert signal_figures(ERROR_CODE_SIGNAL) == "ERR_AUTH_1042: 9 cases against 0.4 expected, over the last 60 min"
    assert signal_figures({"kind": "cluster", "observed": 6, "expected": 1, "window_minutes": 1440}) == (
        "6 cases against 1 expected, over the last 1 d")
    assert signal_figures({"kind": "cluster", "title": "Card declined at checkout", "observed": 6}) == (
        "Card declined at checkout: 6 cases")
    assert signal_figures({"kind": "metric", "metric": "p95", "value": 2150.5, "unit": "ms", "threshold": None}) == (
        "p95: 2,150.5 ms")
    assert signal_figures({"kind": "volume", "observed": "lots", "z": float("nan")}) == ""


def test_the_card_shows_what_fired_the_summary_the_cases_and_the_customers():
    card = make_card(signals=tuple(AlertSignal(s["kind"], signal_figures(s)) for s in
                                   (VOLUME_SIGNAL, METRIC_SIGNAL, ERROR_CODE_SIGNAL)),
                     hypothesis="A deploy broke refunds.", summary_by_ai=True,
                     recommended=("Roll back the deploy", "Tell the refunds team"))
    blocks = alert_blocks(card)
    assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    by_id = {b["block_id"]: b for b in blocks}
    assert by_id["incident_header"]["text"]["text"] == ":large_orange_circle: High alert · Volume spike"
    assert by_id["incident_title"]["text"]["text"] == "*Refund requests spiking*"
    fired = by_id["incident_signals"]["text"]["text"]
    assert "*Volume spike* billing / refund_request: 14 cases against 1.2 expected (z 8.3)" in fired
    assert "*Health metric* api_error_rate on api-gateway: 7.2% against a threshold of 5%" in fired
    assert "*Error code* ERR_AUTH_1042: 9 cases against 0.4 expected" in fired
    assert "(written by AI)" in by_id["incident_summary"]["text"]["text"]
    hypothesis = by_id["incident_hypothesis"]["text"]["text"]
    assert "hypothesis" in hypothesis and "unverified" in hypothesis and "A deploy broke refunds." in hypothesis
    assert "Roll back the deploy" in by_id["incident_next"]["text"]["text"]
    cases = by_id["incident_cases"]["text"]["text"]
    assert "*CX-1234* Refund missing" in cases and "*CX-1235* _(no subject)_" in cases and "/case CX-1234" in cases
    customers = by_id["incident_customers"]["text"]["text"]
    assert "2 customers affected" in customers and "1 enterprise" in customers and "Ada Lovelace (enterprise)" in customers
    assert "Open" in by_id["incident_status"]["elements"][0]["text"]
    assert alert_text(card) == "High alert: Refund requests spiking"


@pytest.mark.parametrize("hostile", [
    HOSTILE,
    HOSTILE * 200,  # ~30k characters
    "x" * 10_000,  # one enormous word
    "*" * 3001,
    "\n" * 500 + "<!everyone>",
])
def test_the_card_is_valid_and_inert_whatever_the_text(hostile: str):
    long_figures = tuple(AlertSignal("volume", f"{hostile} {i}: 14 cases") for i in range(40))
    card = make_card(
        title=hostile, summary=hostile, hypothesis=hostile, recommended=(hostile,) * 20, signals=long_figures,
        cases=tuple(ExampleCase(1000 + i, hostile) for i in range(12)), case_count=500, customer_count=80,
        tiers=((hostile, 3), ("enterprise", 77)), customers=tuple((hostile, hostile) for _ in range(30)),
        status="resolved", resolved_by=hostile, resolved_at=SEEN, jira_key=hostile, jira_url=f"https://x/{hostile}",
        kind=hostile[:40], severity=hostile[:40],
    )
    for variant in (card, replace(card, status="open", jira_key=None), replace(card, status="acknowledged",
                                                                              acknowledged_by="<@U123>")):
        blocks = alert_blocks(variant)
        assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
        text = alert_text(variant)
        reminder = alert_reminder_text(variant, "<!channel>")
        assert len(text) <= 150 and len(reminder) <= mrkdwn.SECTION_TEXT
        assert_inert(blocks, text, reminder)
        for button in buttons(blocks).values():
            assert json.loads(button["value"]) == {"alert_id": str(ALERT_ID)}  # only the alert's id rides along
            assert alert_id_of(button["value"]) == ALERT_ID
    if "<!channel>" in hostile:
        assert "&lt;!channel&gt;" in json.dumps(alert_blocks(card))


def test_the_buttons_follow_where_the_alert_stands():
    assert list(buttons(alert_blocks(make_card()))) == [AlertButton.ACKNOWLEDGE, AlertButton.CREATE_JIRA,
                                                        AlertButton.RESOLVE]
    acknowledged = make_card(status="acknowledged", acknowledged_by="U0ALICE", acknowledged_at=SEEN)
    assert list(buttons(alert_blocks(acknowledged))) == [AlertButton.CREATE_JIRA, AlertButton.RESOLVE]
    filed = replace(acknowledged, jira_key="SUP-7", jira_url="https://jira.example.com/browse/SUP-7")
    assert list(buttons(alert_blocks(filed))) == [AlertButton.RESOLVE]
    resolved = replace(filed, status="resolved", resolved_by="U0BOB", resolved_at=SEEN)
    assert not any(b["block_id"] == ACTIONS_BLOCK_ID for b in alert_blocks(resolved))
    resolved_unfiled = replace(resolved, jira_key=None)
    assert list(buttons(alert_blocks(resolved_unfiled))) == [AlertButton.CREATE_JIRA]  # a post-mortem issue


@pytest.mark.parametrize("value", ["", "null", "[]", "44444444", '{"case_id": "x"}', '{"alert_id": "nope"}',
                                   "not json"])
def test_a_button_value_that_names_no_alert_is_refused(value: str):
    with pytest.raises(ValueError):
        alert_id_of(value)


def test_the_status_line_says_who_did_what_and_when():
    def status(card: AlertCard) -> str:
        block = next(b for b in alert_blocks(card) if b["block_id"] == "incident_status")
        return block["elements"][0]["text"]

    acked = status(make_card(status="acknowledged", acknowledged_by="U0ALICE", acknowledged_at=SEEN,
                             jira_key="SUP-7", jira_url="https://jira.example.com/browse/SUP-7"))
    assert acked.startswith(":eyes: Acknowledged by <@U0ALICE> <!date^")
    assert "Jira <https://jira.example.com/browse/SUP-7|SUP-7>" in acked
    auto = status(make_card(status="resolved", resolved_by="auto", resolved_at=SEEN))
    assert "Resolved automatically: quiet for 120 min" in auto
    assert "Resolved by <@U0BOB>" in status(make_card(status="resolved", resolved_by="U0BOB", resolved_at=SEEN))
    assert "Jira issue being created" in status(make_card(jira_pending=True))
    assert alert_lost_race_text("U0ALICE", "acknowledged", at=SEEN).startswith(
        "<@U0ALICE> already acknowledged this alert at <!date^")
    assert "resolved this alert on its own" in alert_lost_race_text("auto", "resolved")
    assert "<!channel>" not in alert_lost_race_text("<!channel>", "<!channel>")


# ---- posting -------------------------------------------------------------------------------------------------


@pytest.fixture
def deps(pool, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, slack_alerts_channel=ALERTS, slack_review_channel="C0REVIEW",
                        slack_reviewer_group=REVIEWERS, slack_bot_token="xoxb-test",
                        jira_url="https://jira.example.com", alert_resolve_after_minutes=90)
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY), client)


async def post_job(deps: Deps, alert_id: UUID, *, remind: bool = False) -> None:
    await job_handlers(deps)[JobName.ALERT_POST](AlertJob(alert_id=alert_id, remind=remind).payload())


def posted(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == ALERTS and m["thread_ts"] is None]


async def test_an_alert_is_posted_then_edited_in_place_on_a_new_revision(deps, slack):
    made = await make_alert(deps.pool, title=f"Refunds spiking {HOSTILE}",
                            cases=[CaseSpec(f"Refund {i} {HOSTILE}", f"c{i}@example.com", f"Customer {i}",
                                            "enterprise" if i == 0 else "standard") for i in range(7)])
    await post_job(deps, made.alert_id)
    (message,) = posted(slack)
    assert_valid_blocks(message["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    assert_inert(message["blocks"], message["text"])
    rendered = json.dumps(message["blocks"])
    assert "14 cases against 1.2 expected (z 8.3)" in rendered
    assert rendered.count("*CX-") == 5 and "(7 in all)" in rendered  # five example cases of seven
    assert "7 customers affected" in rendered and "1 enterprise" in rendered and "6 standard" in rendered
    stored = await deps.pool.fetchrow("SELECT channel_id, ts FROM slack_messages WHERE alert_id = $1 AND purpose = 'alert'",
                                      made.alert_id)
    assert tuple(stored) == (ALERTS, message["ts"])
    row = await alert_row(deps.pool, made.alert_id)
    assert row["posted_revision"] == row["revision"] == 1

    revision = await bump(deps.pool, made.alert_id, description="Now 30 refund requests in the hour.")
    await post_job(deps, made.alert_id)
    (edited,) = posted(slack)
    assert edited["ts"] == message["ts"] and edited["edited"] is not None
    assert "Now 30 refund requests in the hour." in json.dumps(edited["blocks"])
    assert len(slack.calls("chat.postMessage")) == 1 and len(slack.calls("chat.update")) == 1
    assert (await alert_row(deps.pool, made.alert_id))["posted_revision"] == revision == 2


async def test_a_duplicate_post_job_posts_nothing(deps, slack):
    made = await make_alert(deps.pool)
    await post_job(deps, made.alert_id)
    await post_job(deps, made.alert_id)  # a duplicate, or a retry after the commit
    assert len(posted(slack)) == 1
    assert slack.calls("chat.update") == [] and len(slack.calls("chat.postMessage")) == 1
    result = await deps.incidents.post(made.alert_id)
    assert result.outcome is Outcome.UP_TO_DATE


async def test_two_post_jobs_at_once_post_one_message(deps, slack):
    made = await make_alert(deps.pool)
    await asyncio.gather(*(post_job(deps, made.alert_id) for _ in range(3)))
    assert len(posted(slack)) == 1 and slack.calls("chat.update") == []


async def test_a_failed_post_stores_nothing_and_the_retry_posts_once(deps, slack):
    made = await make_alert(deps.pool)
    slack.fail_next("chat.postMessage", "internal_error")
    with pytest.raises(Exception, match="internal_error"):
        await post_job(deps, made.alert_id)
    assert posted(slack) == [] and await deps.pool.fetchval("SELECT count(*) FROM slack_messages") == 0
    assert (await alert_row(deps.pool, made.alert_id))["posted_revision"] == 0
    await post_job(deps, made.alert_id)
    assert len(posted(slack)) == 1


async def test_a_failed_edit_leaves_the_revision_to_show(deps, slack):
    made = await make_alert(deps.pool)
    await post_job(deps, made.alert_id)
    await bump(deps.pool, made.alert_id, title="Worse now")
    slack.fail_next("chat.update", "internal_error")
    with pytest.raises(Exception, match="internal_error"):
        await post_job(deps, made.alert_id)
    assert (await alert_row(deps.pool, made.alert_id))["posted_revision"] == 1
    await post_job(deps, made.alert_id)
    (message,) = posted(slack)
    assert "Worse now" in json.dumps(message["blocks"])


async def test_a_deleted_message_is_posted_again(deps, slack):
    made = await make_alert(deps.pool)
    await post_job(deps, made.alert_id)
    (first,) = posted(slack)
    slack.messages.remove(first)
    await bump(deps.pool, made.alert_id)
    await post_job(deps, made.alert_id)
    (again,) = posted(slack)
    assert again["ts"] != first["ts"]
    assert await deps.pool.fetchval("SELECT ts FROM slack_messages WHERE alert_id = $1", made.alert_id) == again["ts"]


async def test_a_reminder_goes_to_the_thread_while_nobody_has_acknowledged(deps, slack):
    made = await make_alert(deps.pool, title="Logins failing <!channel>")
    await post_job(deps, made.alert_id, remind=True)  # posted and reminded in one go
    (message,) = posted(slack)
    (reminder,) = [m for m in slack.messages if m["thread_ts"] == message["ts"]]
    assert reminder["text"].startswith(f"<!subteam^{REVIEWERS}>, this high alert has been open since <!date^")
    assert "nobody has acknowledged it" in reminder["text"] and "&lt;!channel&gt;" in reminder["text"]
    assert (await alert_row(deps.pool, made.alert_id))["reminded_at"] is not None
    assert slack.calls("chat.update") == []  # the message itself was up to date

    await deps.pool.execute("UPDATE proactive_alerts SET status = 'acknowledged', acknowledged_by = 'U0BOB', "
                            "acknowledged_at = now(), revision = revision + 1 WHERE alert_id = $1", made.alert_id)
    await post_job(deps, made.alert_id, remind=True)
    assert len([m for m in slack.messages if m["thread_ts"] == message["ts"]]) == 1  # no second reminder
    (message,) = posted(slack)
    assert "Acknowledged by <@U0BOB>" in json.dumps(message["blocks"])


async def test_an_auto_resolved_alert_says_how_long_it_was_quiet(deps, slack):
    made = await make_alert(deps.pool)
    await post_job(deps, made.alert_id)
    await bump(deps.pool, made.alert_id, status="resolved", resolved_by="auto", resolved_at=datetime.now(UTC))
    await post_job(deps, made.alert_id)
    (message,) = posted(slack)
    assert "Resolved automatically: quiet for 90 min" in json.dumps(message["blocks"])
    assert not [b for b in message["blocks"] if b["type"] == "actions" and
                any(e["action_id"] != AlertButton.CREATE_JIRA for e in b["elements"])]


async def critical_case_alert(deps: Deps) -> tuple[UUID, UUID]:
    case_id = await new_case(deps.pool, "Someone emptied my account overnight, I need help now")
    await deps.pool.execute("UPDATE customers SET account_tier = 'enterprise'")
    outcome = await triage_case(deps.pool, ScriptedLocal(0.9, priority="critical"), TAXONOMY, THRESHOLDS, case_id)
    assert outcome is not None and outcome.decision.route == "human_urgent"
    async with deps.pool.acquire() as conn:  # as the detection pass attaches evidence to it
        alert_id = await open_urgent_alert(conn, case_id)
    assert alert_id is not None
    return case_id, alert_id


async def test_a_critical_case_alert_is_posted_by_its_own_job_and_refreshed_by_this_one(deps, slack):
    case_id, alert_id = await critical_case_alert(deps)
    await post_job(deps, alert_id)
    assert posted(slack) == []  # the urgent-alert job posts it, with its Take button
    assert (await alert_row(deps.pool, alert_id))["posted_revision"] == 0

    await job_handlers(deps)[JobName.URGENT_ALERT](json.dumps({"case_id": str(case_id)}).encode())
    (message,) = posted(slack)
    assert (await alert_row(deps.pool, alert_id))["posted_revision"] == 1
    await deps.pool.execute("UPDATE cases SET owner_slack_user_id = 'U0ALICE' WHERE case_id = $1", case_id)
    await bump(deps.pool, alert_id)
    await post_job(deps, alert_id)
    (message,) = posted(slack)
    assert message["edited"] is not None and "Taken by <@U0ALICE>" in json.dumps(message["blocks"])
    assert (await alert_row(deps.pool, alert_id))["posted_revision"] == 2


# ---- App Home and /metrics -----------------------------------------------------------------------------------


async def test_home_lists_the_open_alerts_with_links_to_their_messages(deps, slack):
    posted_alert = await make_alert(deps.pool, severity="critical", title=f"Payments down {HOSTILE}")
    await post_job(deps, posted_alert.alert_id)
    acked = await make_alert(deps.pool, severity="warning", title="Slow logins", kind="metric",
                             signals=[METRIC_SIGNAL], cases=[], fingerprint="metric:login")
    await deps.pool.execute("UPDATE proactive_alerts SET status = 'acknowledged', acknowledged_by = 'U0BOB', "
                            "acknowledged_at = now() WHERE alert_id = $1", acked.alert_id)
    await make_alert(deps.pool, title="Long over", status="resolved", cases=[], fingerprint="volume:over")

    facts = await deps.home.home("U0ALICE")
    assert [a.title for a in facts.alerts] == [f"Payments down {HOSTILE}", "Slow logins"]
    assert facts.alerts_total == 2
    view = home_view(facts)
    assert_valid_blocks(view["blocks"], max_blocks=mrkdwn.BLOCKS_PER_VIEW)
    assert_inert(view["blocks"])
    first = next(b for b in view["blocks"] if b.get("block_id") == "home_alert_0")["text"]["text"]
    (message,) = posted(slack)
    link = f"https://fake-workspace.slack.com/archives/{ALERTS}/p{message['ts'].replace('.', '')}"
    assert first.startswith(f":red_circle: *Critical* · <{link}|Payments down Hi &lt;!channel&gt;")
    assert "open 30 min · *not acknowledged*" in first
    second = next(b for b in view["blocks"] if b.get("block_id") == "home_alert_1")["text"]["text"]
    assert "acknowledged by <@U0BOB>" in second and "<http" not in second  # not posted: no link
    assert "Long over" not in json.dumps(view)


async def test_home_says_when_no_alert_is_open(deps, slack):
    view = home_view(await deps.home.home("U0ALICE"))
    assert next(b for b in view["blocks"] if b.get("block_id") == "home_alerts_none")["text"]["text"] == "No open alerts."
    assert slack.calls("auth.test") == []  # nothing to link, nothing asked


async def test_the_metrics_gauge_counts_open_alerts_by_severity_and_status(deps, slack):
    metrics = Metrics()
    await make_alert(deps.pool, severity="critical", cases=[], fingerprint="a")
    await make_alert(deps.pool, severity="critical", cases=[], fingerprint="b")
    acked = await make_alert(deps.pool, severity="warning", cases=[], fingerprint="c")
    await deps.pool.execute("UPDATE proactive_alerts SET status = 'acknowledged' WHERE alert_id = $1", acked.alert_id)
    await make_alert(deps.pool, severity="high", cases=[], fingerprint="d", status="resolved")
    await refresh_open_alerts(metrics, deps.pool)
    scraped = generate_latest(metrics.registry).decode()
    assert 'cx_alerts_open{severity="critical",status="open"} 2.0' in scraped
    assert 'cx_alerts_open{severity="warning",status="acknowledged"} 1.0' in scraped
    assert 'cx_alerts_open{severity="high",status="open"} 0.0' in scraped  # resolved ones are not open

    await deps.pool.execute("UPDATE proactive_alerts SET status = 'resolved', resolved_at = now()")
    await refresh_open_alerts(metrics, deps.pool)
    assert 'cx_alerts_open{severity="critical",status="open"} 0.0' in generate_latest(metrics.registry).decode()


async def test_the_post_job_refreshes_the_workers_gauge(deps, slack):
    made = await make_alert(deps.pool, severity="critical")
    await post_job(deps, made.alert_id)
    assert 'cx_alerts_open{severity="critical",status="open"} 1.0' in generate_latest(deps.metrics.registry).decode()
