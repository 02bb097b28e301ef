"""The review hub through Bolt: real payload shapes dispatched to our listeners, the queued jobs run
as the worker runs them, the real slack_sdk client against the fake Web API. Asserts on the Slack
calls made and on the database."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients import slack_client
from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from bot.slack.app import build_slack_app, http_route
from bot.slack.thread_poster import SlackThreadPoster
from db import intake as intake_db
from db.pool import transaction
from pipelines.adapters.jira_tracker import JiraTracker
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import draft_case
from pipelines.jobs import ReviewAction
from pipelines.replies.outbox import Channels, SendResult, send_reply
from pipelines.review import decisions as review
from pipelines.triage.step import triage_case
from tests.fakes.jira import FakeJira
from tests.fakes.slack import FakeSlack
from tests.support.cases import POLICY, SENDER, import_demo_kb, jobs_queued, review_case
from tests.support.jobs import run_jobs
from tests.support.review import click
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

REVIEW_CHANNEL = "C0REVIEW"


@pytest.fixture
def deps(pool, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL, slack_reviewer_group=REVIEWERS,
                        slack_bot_token="xoxb-test", slack_api_url=slack.url + "/api/")
    client = slack_client(settings)  # the product's client, with its rate-limit retries
    assert client is not None
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY), client)


async def posted_card(deps: Deps, slack: FakeSlack) -> tuple[Any, dict[str, Any]]:
    case_id, draft_id = await review_case(deps.pool)
    assert await run_jobs(deps, "case.review_card") == 1
    (card,) = [m for m in slack.messages if m["thread_ts"] is None]
    return (case_id, draft_id), card


def button(card: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id)


async def dispatch(deps: Deps, body: dict[str, Any]) -> int:
    app = build_slack_app(deps.services, deps.slack)
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    return response.status


async def test_a_review_card_is_posted_once_with_its_buttons(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    assert card["channel"] == REVIEW_CHANNEL
    ids = {e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert {"review_approve", "review_reject", "review_take"} <= ids
    row = await deps.pool.fetchrow("SELECT channel_id, ts FROM slack_messages WHERE case_id = $1", case_id)
    assert tuple(row) == (REVIEW_CHANNEL, card["ts"])
    # A retried card job updates the same message instead of posting another.
    await job_handlers(deps)["case.review_card"](json.dumps({"case_id": str(case_id)}).encode())
    assert len([m for m in slack.messages if m["thread_ts"] is None]) == 1
    assert slack.calls("chat.update")


async def test_approve_click_acks_queues_and_the_job_sends_once_and_updates_the_card(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    assert await dispatch(deps, slack.block_actions(card, "review_approve", "U0ALICE")) == 200
    assert [j for j, _ in await jobs_queued(deps.pool)].count("review.action") == 1
    assert await run_jobs(deps, "review.action") == 1
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "sending"
    assert await deps.pool.fetchval("SELECT approved_by FROM reply_outbox") == "U0ALICE"
    updated = slack.calls("chat.update")[-1].json or slack.calls("chat.update")[-1].params
    assert updated["ts"] == card["ts"]
    (message,) = [m for m in slack.messages if m["ts"] == card["ts"]]
    assert not any(b["type"] == "actions" and any(e["action_id"] == "review_approve" for e in b["elements"])
                   for b in message["blocks"]), "a spent Approve button disappears"
    assert "U0ALICE" in json.dumps(message["blocks"])


async def test_a_non_reviewer_is_refused_and_nothing_changes(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_approve", "U0MALLORY"))
    await run_jobs(deps, "review.action")
    assert [e["user"] for e in slack.ephemeral] == ["U0MALLORY"]
    assert "reviewer" in slack.ephemeral[0]["text"].lower()
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "awaiting_review"
    assert await deps.pool.fetchval("SELECT count(*) FROM reply_outbox") == 0
    assert await deps.pool.fetchval("SELECT status FROM review_queue") == "pending"


async def test_a_double_click_sends_once_and_tells_the_second_clicker_who_won(deps, slack):
    _, card = await posted_card(deps, slack)
    await asyncio.gather(dispatch(deps, slack.block_actions(card, "review_approve", "U0ALICE")),
                         dispatch(deps, slack.block_actions(card, "review_approve", "U0BOB")))
    assert await run_jobs(deps, "review.action") == 2
    assert await deps.pool.fetchval("SELECT count(*) FROM reply_outbox") == 1
    assert [j for j, _ in await jobs_queued(deps.pool)].count("reply.send") == 1
    winner = await deps.pool.fetchval("SELECT approved_by FROM reply_outbox")
    (told,) = slack.ephemeral
    assert told["user"] == ({"U0ALICE", "U0BOB"} - {winner}).pop() and winner in told["text"]


async def test_a_duplicated_delivery_has_no_second_effect(deps, slack):
    _, card = await posted_card(deps, slack)
    body = slack.block_actions(card, "review_approve", "U0ALICE", action_ts="1700000123.000100")
    assert await dispatch(deps, body) == 200
    assert await dispatch(deps, body) == 200  # Slack redelivers an envelope it saw no ack for
    assert await run_jobs(deps, "review.action") == 1
    assert slack.ephemeral == [] and await deps.pool.fetchval("SELECT count(*) FROM agent_feedback") == 1


async def test_reject_opens_a_modal_and_its_submission_hands_the_case_over(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_reject", "U0BOB"))
    (view,) = await slack.wait_until(lambda: list(slack.views.values()))
    assert view["callback_id"] == "review_reject_modal"
    submission = {
        "type": "view_submission", "team": {"id": slack.team_id}, "user": {"id": "U0BOB", "team_id": slack.team_id},
        "api_app_id": slack.app_id, "token": "verification-token", "trigger_id": "1.2.trigger",
        "view": {**view, "state": {"values": {
            "reason": {"reason": {"type": "static_select", "selected_option": {
                "text": {"type": "plain_text", "text": "Tone not right"}, "value": "tone"}}},
            "note": {"note": {"type": "plain_text_input", "value": "too stiff"}}}}},
    }
    assert await dispatch(deps, submission) == 200
    assert await run_jobs(deps, "review.action") == 1
    case = await deps.pool.fetchrow("SELECT status, owner_slack_user_id FROM cases WHERE case_id = $1", case_id)
    assert tuple(case) == ("human_owned", "U0BOB")
    assert await deps.pool.fetchval("SELECT reviewer_comments FROM review_queue") == "tone: too stiff"
    assert await deps.pool.fetchval("SELECT count(*) FROM reply_outbox") == 0
    (message,) = [m for m in slack.messages if m["ts"] == card["ts"]]
    assert "Rejected" in json.dumps(message["blocks"])


async def test_a_card_that_cannot_be_posted_stays_queued(deps, slack):
    case_id, _ = await review_case(deps.pool)
    slack.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(Exception, match="channel_not_found"):
        await job_handlers(deps)["case.review_card"](json.dumps({"case_id": str(case_id)}).encode())
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_messages") == 0
    assert "case.review_card" in [j for j, _ in await jobs_queued(deps.pool)]


async def test_escalate_files_one_jira_issue_and_links_it_on_the_card(pool, slack):
    async with FakeJira(projects=("SUP",)) as jira:
        settings = Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL, slack_reviewer_group=REVIEWERS,
                            jira_url=jira.url, jira_email="bot@example.com", jira_api_token="token")
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
        tracker = JiraTracker(jira.url, "bot@example.com", "token", "SUP")
        deps = with_slack(Deps(settings=settings, pool=pool, metrics=Metrics()), client, tracker)
        (case_id, _), card = await posted_card(deps, slack)
        await dispatch(deps, slack.block_actions(card, "review_escalate", "U0ALICE"))
        await dispatch(deps, slack.block_actions(card, "review_escalate", "U0BOB"))
        assert await run_jobs(deps, "review.action") == 2
        (issue,) = jira.issues.values()
        assert f"cx-case-{case_id}" in issue["fields"]["labels"]
        case = await pool.fetchrow("SELECT status, jira_issue_key FROM cases WHERE case_id = $1", case_id)
        assert tuple(case) == ("escalated", issue["key"])
        assert await pool.fetchval("SELECT status FROM review_queue") == "escalated"
        assert [e["user"] for e in slack.ephemeral] == ["U0BOB"]  # the second click learns it was done
        (message,) = [m for m in slack.messages if m["ts"] == card["ts"]]
        assert f"{jira.url}/browse/{issue['key']}" in json.dumps(message["blocks"])
        await tracker.close()


def submission(slack: FakeSlack, view: dict[str, Any], user: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"type": "view_submission", "team": {"id": slack.team_id}, "user": {"id": user, "team_id": slack.team_id},
            "api_app_id": slack.app_id, "token": "verification-token", "trigger_id": "1.2.trigger",
            "view": {**view, "state": {"values": values}}}


def chosen(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}


async def test_edit_sends_the_reviewers_text_and_learns_the_corrected_labels(deps, slack):
    (case_id, draft_id), card = await posted_card(deps, slack)
    before = await deps.pool.fetchrow("SELECT category, subcategory FROM cases WHERE case_id = $1", case_id)
    assert tuple(before) == ("card_delivery", "card_arrival")
    await dispatch(deps, slack.block_actions(card, "review_edit", "U0ALICE"))
    (view,) = await slack.wait_until(lambda: list(slack.views.values()))
    assert view["callback_id"] == "review_edit_modal"
    prefilled = next(b for b in view["blocks"] if b.get("block_id") == "reply")["element"]["initial_value"]
    assert prefilled.startswith("Hi Mia,")
    values = {"reply": {"reply": {"type": "plain_text_input", "value": "Hi Mia, your new card is on its way."}},
              "category": {"category": chosen("card_delivery")}, "subcategory": {"subcategory": chosen("card_delivery_estimate")},
              "priority": {"priority": chosen("high")}, "note": {"note": {"type": "plain_text_input", "value": None}}}
    assert await dispatch(deps, submission(slack, view, "U0ALICE", values)) == 200
    assert await run_jobs(deps, "review.action") == 1
    out = await deps.pool.fetchrow("SELECT body, approved_by FROM reply_outbox")
    assert out["approved_by"] == "U0ALICE" and "your new card is on its way" in out["body"]
    review_row = await deps.pool.fetchrow("SELECT status, final_solution FROM review_queue")
    assert review_row["status"] == "edited" and review_row["final_solution"] == "Hi Mia, your new card is on its way."
    feedback = {(r["feedback_type"], r["field"]): (r["ai_value"], r["human_value"])
                for r in await deps.pool.fetch("SELECT * FROM agent_feedback")}
    assert feedback[("edit", "draft")][1] == "Hi Mia, your new card is on its way."
    assert feedback[("correction", "priority")][1] == "high"
    assert feedback[("correction", "subcategory")] == (before["subcategory"], "card_delivery_estimate")
    assert ("correction", "category") not in feedback  # unchanged: card_delivery both times
    example = await deps.pool.fetchrow("SELECT category, subcategory, priority, source, case_id FROM labelled_examples")
    assert tuple(example) == ("card_delivery", "card_delivery_estimate", "high", "correction", case_id)
    case = await deps.pool.fetchrow("SELECT status, subcategory, priority FROM cases WHERE case_id = $1", case_id)
    assert tuple(case) == ("sending", "card_delivery_estimate", "high")


async def test_an_edit_with_a_subcategory_of_another_category_is_refused_in_the_modal(deps, slack):
    _, card = await posted_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_edit", "U0ALICE"))
    (view,) = await slack.wait_until(lambda: list(slack.views.values()))
    values = {"reply": {"reply": {"type": "plain_text_input", "value": "Hi"}},
              "category": {"category": chosen("card_delivery")}, "subcategory": {"subcategory": chosen("top_up_failed")}}
    app = build_slack_app(deps.services, deps.slack)
    response = await app.async_dispatch(AsyncBoltRequest(body=submission(slack, view, "U0ALICE", values),
                                                         mode="socket_mode"))
    assert json.loads(response.body)["response_action"] == "errors"
    assert [j for j, _ in await jobs_queued(deps.pool)].count("review.action") == 0


async def test_http_mode_checks_slacks_signature_and_queues_the_click(deps, slack):
    _, card = await posted_card(deps, slack)
    app = web.Application()
    app.router.add_post("/slack/events", http_route(build_slack_app(deps.services, deps.slack, "signing-secret")))
    body = urlencode({"payload": json.dumps(slack.block_actions(card, "review_approve", "U0ALICE"))})
    stamp = str(int(time.time()))
    signature = SignatureVerifier("signing-secret").generate_signature(timestamp=stamp, body=body)
    async with TestClient(TestServer(app)) as http:
        forged = await http.post("/slack/events", data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + "0" * 64})
        assert forged.status == 401
        assert [j for j, _ in await jobs_queued(deps.pool)].count("review.action") == 0
        signed = await http.post("/slack/events", data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature})
        assert signed.status == 200
    assert [j for j, _ in await jobs_queued(deps.pool)].count("review.action") == 1


async def test_a_deleted_card_is_posted_again_while_the_case_waits(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    slack.messages.remove(next(m for m in slack.messages if m["ts"] == card["ts"]))
    await job_handlers(deps)["case.review_card"](json.dumps({"case_id": str(case_id)}).encode())
    (again,) = [m for m in slack.messages if m["thread_ts"] is None]
    assert again["ts"] != card["ts"]
    assert await deps.pool.fetchval("SELECT ts FROM slack_messages WHERE case_id = $1", case_id) == again["ts"]


async def test_a_ratelimited_card_post_is_retried_after_retry_after(deps, slack):
    case_id, _ = await review_case(deps.pool)
    slack.ratelimit_next("chat.postMessage", retry_after=1)
    started = time.monotonic()
    await job_handlers(deps)["case.review_card"](json.dumps({"case_id": str(case_id)}).encode())
    assert time.monotonic() - started >= 1  # waited as Slack asked
    assert len(slack.calls("chat.postMessage")) == 2  # the 429, then the post
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_messages WHERE case_id = $1", case_id) == 1


async def slack_case(deps: Deps, slack: FakeSlack) -> tuple[Any, Any, str]:
    """A case made from a Slack message, drafted and waiting for review: (case id, draft id, message ts)."""
    root = await deps.slack.chat_postMessage(channel="C0SUPPORT", text="My card never arrived, where is it?")
    await import_demo_kb(deps.pool)
    async with transaction(deps.pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email="u0mia@slack.invalid", customer_name="Mia", channel="slack", subject=None,
            description="My card never arrived, where is it?", interaction_type="slack_in",
            external_id=f"slack:C0SUPPORT:{root['ts']}",
            metadata={"slack": {"channel": "C0SUPPORT", "ts": root["ts"], "thread_ts": None}})
    await triage_case(deps.pool, ScriptedLocal(0.7, "card_arrival"), TAXONOMY, THRESHOLDS, stored.case_id)
    outcome = await draft_case(deps.pool, FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85)),
                               None, TAXONOMY, POLICY, stored.case_id)
    assert outcome is not None and not outcome.decision.auto_send
    return stored.case_id, outcome.draft_id, root["ts"]


async def test_the_reply_to_a_slack_case_goes_to_its_thread_once(deps, slack):
    case_id, draft_id, root_ts = await slack_case(deps, slack)
    assert (await review.apply(deps.pool, SENDER, click(ReviewAction.APPROVE, "U0ALICE", case_id, draft_id))).done
    assert await deps.pool.fetchval("SELECT channel FROM reply_outbox") == "slack"
    await run_jobs(deps, "reply.send")
    (reply,) = [m for m in slack.messages if m["thread_ts"] == root_ts]
    assert reply["channel"] == "C0SUPPORT" and "Your case reference: CX-" in reply["text"]
    out = await deps.pool.fetchrow("SELECT status, provider_message_id FROM reply_outbox")
    assert tuple(out) == ("sent", reply["ts"])
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "replied"


async def test_a_slack_reply_posted_before_the_worker_died_is_found_not_posted_again(deps, slack):
    case_id, draft_id, root_ts = await slack_case(deps, slack)
    await review.apply(deps.pool, SENDER, click(ReviewAction.APPROVE, "U0ALICE", case_id, draft_id))
    out = await deps.pool.fetchrow("SELECT outbox_id, draft_key, body FROM reply_outbox")
    # The worker posted and died before recording it: the row is left in `sending`.
    await deps.pool.execute("UPDATE reply_outbox SET status = 'sending'")
    posted = await SlackThreadPoster(deps.slack).post("C0SUPPORT", root_ts, out["body"], out["draft_key"])
    result = await send_reply(deps.pool, Channels(None, None, SlackThreadPoster(deps.slack)), SENDER, out["outbox_id"])
    assert result == SendResult.FOUND_SENT
    assert len([m for m in slack.messages if m["thread_ts"] == root_ts]) == 1
    assert await deps.pool.fetchval("SELECT provider_message_id FROM reply_outbox") == posted


async def test_a_reply_slack_refuses_for_good_goes_back_to_review_instead_of_retrying(deps, slack):
    case_id, draft_id, root_ts = await slack_case(deps, slack)
    await review.apply(deps.pool, SENDER, click(ReviewAction.APPROVE, "U0ALICE", case_id, draft_id))
    await deps.pool.execute("DELETE FROM pgqueuer WHERE entrypoint = 'case.review_card'")
    slack.fail_next("chat.postMessage", "not_in_channel")
    assert await run_jobs(deps, "reply.send") == 1  # returned normally: no retry would help
    out = await deps.pool.fetchrow("SELECT status, last_error FROM reply_outbox")
    assert out["status"] == "failed" and "not_in_channel" in out["last_error"]
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "awaiting_review"
    assert "case.review_card" in [j for j, _ in await jobs_queued(deps.pool)]
    assert [m for m in slack.messages if m["thread_ts"] == root_ts] == []


async def test_a_card_refresh_failing_after_a_click_is_queued_not_the_click_retried(deps, slack):
    (case_id, _), card = await posted_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_approve", "U0ALICE"))
    slack.fail_next("chat.update", "internal_error")
    assert await run_jobs(deps, "review.action") == 1  # did not raise
    assert slack.ephemeral == []  # nobody is told they lost
    assert await deps.pool.fetchval("SELECT count(*) FROM reply_outbox") == 1
    assert "case.review_card" in [j for j, _ in await jobs_queued(deps.pool)]


async def test_two_card_writers_at_once_post_one_card(deps, slack):
    case_id, _ = await review_case(deps.pool)
    await asyncio.gather(deps.review.post_card(case_id), deps.review.post_card(case_id))
    assert len([m for m in slack.messages if m["thread_ts"] is None]) == 1
    assert len(slack.calls("chat.update")) == 1  # the second found the card and refreshed it


async def test_a_card_posted_by_an_attempt_that_died_before_recording_it_is_adopted_not_posted_again(deps, slack):
    """A process killed between Slack's answer and the record leaves an intent and a card in the
    channel (carrying its case in the message metadata); the retried job finds that card."""
    (case_id, _), card = await posted_card(deps, slack)
    assert card["metadata"] == {"event_type": "cx_review_card", "event_payload": {"case_id": str(case_id)}}
    # The state the dead attempt left: the card in Slack, its intent, no record.
    await deps.pool.execute("DELETE FROM slack_messages WHERE case_id = $1", case_id)
    await deps.pool.execute("INSERT INTO slack_post_intents (case_id, purpose) VALUES ($1, 'review_card')", case_id)

    await job_handlers(deps)["case.review_card"](json.dumps({"case_id": str(case_id)}).encode())

    assert [m["ts"] for m in slack.messages if m["thread_ts"] is None] == [card["ts"]], "no second card"
    row = await deps.pool.fetchrow("SELECT channel_id, ts FROM slack_messages WHERE case_id = $1", case_id)
    assert tuple(row) == (REVIEW_CHANNEL, card["ts"])
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_post_intents") == 0
    assert slack.calls("chat.update"), "the adopted card is refreshed"


async def test_an_attempt_that_died_before_reaching_slack_leaves_the_card_to_the_retry(deps, slack):
    case_id, _ = await review_case(deps.pool)
    await deps.pool.execute("INSERT INTO slack_post_intents (case_id, purpose) VALUES ($1, 'review_card')", case_id)
    assert await run_jobs(deps, "case.review_card") == 1
    cards = [m for m in slack.messages if m["thread_ts"] is None]
    assert len(cards) == 1 and slack.calls("conversations.history"), "looked first, then posted once"
    assert await deps.pool.fetchval("SELECT ts FROM slack_messages WHERE case_id = $1", case_id) == cards[0]["ts"]
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_post_intents") == 0
