"""Mark resolved through Bolt: the real payload dispatched to our listener, queued before the ack, the
job run as the worker runs it, the real slack_sdk client against the fake Slack. Asserts on the
database and on the card as Slack holds it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.clients import slack_client
from bot.deps import Deps, with_slack
from bot.runtime.metrics import Metrics
from bot.services.commands import case_detail
from bot.settings import Settings
from bot.slack.app import build_slack_app
from handlers.case_views import case_reply
from pipelines.jobs import ReviewAction
from pipelines.review import decisions as review
from pipelines.review import lookup
from tests.fakes.slack import FakeSlack
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import SENDER, jobs_queued, review_case
from tests.support.jobs import run_jobs
from tests.support.review import click
from tests.support.slack import REVIEWERS

REVIEW_CHANNEL = "C0REVIEW"


@pytest.fixture
def deps(pool, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL, slack_reviewer_group=REVIEWERS,
                        slack_bot_token="xoxb-test", slack_api_url=slack.url + "/api/")
    client = slack_client(settings)
    assert client is not None
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics()), client)


async def dispatch(deps: Deps, body: dict[str, Any]) -> int:
    app = build_slack_app(deps.services, deps.slack)
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    return response.status


def card_message(slack: FakeSlack, ts: str) -> dict[str, Any]:
    (message,) = [m for m in slack.messages if m["ts"] == ts]
    return message


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def taken_card(deps: Deps, slack: FakeSlack) -> tuple[Any, dict[str, Any]]:
    """A case a reviewer took: its card carries Mark resolved next to the review buttons."""
    case_id, draft_id = await review_case(deps.pool)
    assert await run_jobs(deps, "case.review_card") == 1
    (card,) = [m for m in slack.messages if m["thread_ts"] is None]
    assert "review_resolve" not in buttons(card)  # awaiting review: take or reject it first
    assert (await review.apply(deps.pool, SENDER, click(ReviewAction.TAKE, "U0BOB", case_id, draft_id))).done
    await deps.review.post_card(case_id)  # type: ignore[union-attr]
    card = card_message(slack, card["ts"])
    assert_valid_blocks(card["blocks"], max_blocks=50)
    return case_id, card


async def test_mark_resolved_is_queued_before_the_ack_and_updates_the_card_in_place(deps, slack):
    case_id, card = await taken_card(deps, slack)
    assert "review_resolve" in buttons(card)
    (resolve,) = [e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "review_resolve"]
    assert resolve["confirm"]["confirm"]["text"] == "Mark resolved"

    assert await dispatch(deps, slack.block_actions(card, "review_resolve", "U0ALICE")) == 200
    assert [j for j, _ in await jobs_queued(deps.pool)].count("review.action") == 1
    assert await run_jobs(deps, "review.action") == 1

    row = await deps.pool.fetchrow("SELECT status, resolution_type, resolved_at FROM cases WHERE case_id = $1",
                                   case_id)
    assert (row["status"], row["resolution_type"]) == ("resolved", "human") and row["resolved_at"]
    moved = await deps.pool.fetchrow("SELECT actor_type, actor_id, from_status FROM case_interactions "
                                     "WHERE case_id = $1 AND to_status = 'resolved'", case_id)
    assert tuple(moved) == ("reviewer", "U0ALICE", "human_owned")

    message = card_message(slack, card["ts"])
    assert_valid_blocks(message["blocks"], max_blocks=50)
    assert buttons(message) == []  # nothing left to do on a resolved case
    status = json.dumps([b for b in message["blocks"] if b["block_id"] == "card_status"])
    assert "Resolved by <@U0ALICE>" in status and "handled by a person" in status
    assert len([m for m in slack.messages if m["thread_ts"] is None]) == 1  # updated, not posted again


async def test_a_non_reviewer_cannot_mark_a_case_resolved(deps, slack):
    case_id, card = await taken_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_resolve", "U0MALLORY"))
    await run_jobs(deps, "review.action")
    assert [e["user"] for e in slack.ephemeral] == ["U0MALLORY"]
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "human_owned"


async def test_the_second_click_learns_who_resolved_it(deps, slack):
    case_id, card = await taken_card(deps, slack)
    await dispatch(deps, slack.block_actions(card, "review_resolve", "U0ALICE"))
    await dispatch(deps, slack.block_actions(card, "review_resolve", "U0BOB"))
    assert await run_jobs(deps, "review.action") == 2
    (told,) = slack.ephemeral
    assert told["user"] == "U0BOB" and "<@U0ALICE>" in told["text"]
    assert await deps.pool.fetchval("SELECT count(*) FROM case_interactions WHERE case_id = $1 "
                                    "AND to_status = 'resolved'", case_id) == 1


async def test_case_offers_mark_resolved_and_its_click_resolves(deps, slack):
    case_id, card = await taken_card(deps, slack)
    found = await lookup.by_id(deps.pool, case_id)
    assert found is not None
    reply = case_reply(case_detail(found))
    assert_valid_blocks(reply.blocks, max_blocks=50)
    view = {"channel": "C0SUPPORT", "ts": "1700000000.000200", "blocks": reply.blocks}
    assert "review_resolve" in buttons(view)
    assert await dispatch(deps, slack.block_actions(view, "review_resolve", "U0ALICE", ephemeral=True)) == 200
    assert await run_jobs(deps, "review.action") == 1
    assert await deps.pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "resolved"
    assert "review_resolve" not in buttons(card_message(slack, card["ts"]))
    resolved = await lookup.by_id(deps.pool, case_id)
    assert resolved is not None
    facts = json.dumps(case_reply(case_detail(resolved)).blocks)
    assert "*Resolved*" in facts and "handled by a person" in facts
