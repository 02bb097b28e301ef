"""The review hub end to end, as `cx run` wires it: the real Bolt app over Socket Mode (slack_bolt's
AsyncSocketModeHandler on a websocket to the fake Slack), the real Worker running the queued jobs,
and the reply mailed through the real Gmail client to the fake Gmail. Nothing is dispatched by hand:
envelopes go in through the socket and the assertions are on what Slack, Gmail and the database saw."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.runtime.worker import Worker
from bot.settings import Settings
from bot.slack.app import build_slack_app, socket_mode_handler
from db import jobs
from handlers.review_card import review_card_blocks
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from tests.fakes.gmail import FakeGmail
from tests.fakes.slack import FakeSlack
from tests.support.cases import SENDER, review_case
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY

REVIEW_CHANNEL = "C0REVIEW"
ACK_DEADLINE = 3.0  # seconds: Slack's limit for acknowledging an envelope


@dataclass
class Desk:
    slack: FakeSlack
    gmail: FakeGmail
    deps: Deps
    worker: Worker  # started by the test once its case is drafted: the worker would race it for the draft


@pytest.fixture
async def desk(pool, gmail) -> AsyncIterator[Desk]:
    fake_gmail, mailbox = gmail
    async with FakeSlack() as slack:
        slack.usergroup_members[REVIEWERS] = ["U0ALICE", "U0BOB"]
        settings = Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL, slack_reviewer_group=REVIEWERS,
                            support_email=SENDER.address, worker_concurrency=4)
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
        # The drafter and taxonomy are there for the case.draft job triage left queued: the real
        # worker runs it too, and finds the case already drafted.
        deps = with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY, mailbox=mailbox,
                               drafter=FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85))),
                          client)
        assert deps.services is not None
        handler = socket_mode_handler(build_slack_app(deps.services, client), "xapp-test")
        worker = Worker(pool, settings, deps.metrics, job_handlers(deps))
        await handler.connect_async()
        try:
            await slack.wait_connected()
            yield Desk(slack, fake_gmail, deps, worker)
        finally:
            await handler.close_async()
            await worker.drain(5)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15) -> Any:
    """Poll the database (which has no change feed) until check() is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)
    return value


def top_level(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == REVIEW_CHANNEL and m["thread_ts"] is None]




def actions_of(message: dict[str, Any]) -> set[str]:
    return {e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


async def acks_for(slack: FakeSlack, envelope_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` acks of one envelope, each within Slack's deadline."""
    acks = await slack.wait_until(
        lambda: (found := [a for a in slack.acks if a["envelope_id"] == envelope_id])[count - 1:] and found,
        ACK_DEADLINE,
    )
    assert all(a["latency"] < ACK_DEADLINE for a in acks)
    return acks


async def queue_idle(pool) -> bool:
    async with pool.acquire() as conn:
        depth = await jobs.depth(conn)
    return depth.queued == depth.picked == 0


async def test_approve_over_the_socket_sends_one_email_and_updates_the_card_in_place(desk: Desk):
    slack, mail, pool = desk.slack, desk.gmail, desk.deps.pool
    case_id, draft_id = await review_case(pool)
    await desk.worker.start()

    # The worker picks up case.review_card and posts the card to the review channel.
    (message,) = await slack.wait_until(lambda: top_level(slack), timeout=10)
    card = copy.deepcopy(message)  # as reviewers saw it: the fake updates its message in place
    (posted,) = [c.params for c in slack.calls("chat.postMessage") if c.params.get("thread_ts") is None]
    assert posted["channel"] == REVIEW_CHANNEL
    shown = await desk.deps.review.card(case_id)
    assert shown is not None and posted["blocks"] == card["blocks"] == review_card_blocks(shown)
    assert {"review_approve", "review_reject", "review_take"} <= actions_of(card)
    stored = await eventually(lambda: pool.fetchrow("SELECT channel_id, ts FROM slack_messages WHERE case_id = $1",
                                                    case_id), "the card's message was recorded")
    assert tuple(stored) == (REVIEW_CHANNEL, card["ts"])

    # The handler asked for its websocket through the app's own client, with the app-level token.
    (opened,) = slack.calls("apps.connections.open")
    assert opened.header("Authorization") == "Bearer xapp-test"

    # Alice approves: the envelope goes through the websocket and Bolt acks it in time.
    approve = slack.block_actions(card, "review_approve", "U0ALICE")
    envelope_id = await slack.send_envelope("interactive", approve)
    (ack,) = await acks_for(slack, envelope_id, 1)
    assert ack == {"envelope_id": envelope_id, "sent_at": ack["sent_at"], "received_at": ack["received_at"],
                   "latency": ack["latency"]}

    # review.action approves and refreshes the card; reply.send mails the customer through Gmail.
    await eventually(lambda: pool.fetchval("SELECT status = 'sent' FROM reply_outbox"), "the reply was sent")
    await slack.wait_until(lambda: slack.calls("chat.update"), timeout=10)
    (sent,) = mail.sent
    assert sent.message["To"] == "mia@example.com" and sent.message["X-CX-Draft-Id"] == str(draft_id)
    outbox = await pool.fetchrow("SELECT status, approved_by, provider_message_id FROM reply_outbox")
    assert tuple(outbox) == ("sent", "U0ALICE", sent.id)
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "replied"
    assert await pool.fetchval("SELECT status FROM review_queue WHERE case_id = $1", case_id) == "approved"
    update = slack.calls("chat.update")[-1].params
    assert (update["channel"], update["ts"]) == (REVIEW_CHANNEL, card["ts"])
    (refreshed,) = top_level(slack)
    assert refreshed["ts"] == card["ts"] and refreshed["edited"] is not None
    assert "review_approve" not in actions_of(refreshed), "a spent Approve button disappears"
    assert "U0ALICE" in json.dumps(refreshed["blocks"])

    # Slack redelivers the same envelope, and Bob approves on the card as he saw it before the
    # update: both are acked, neither sends a second email; Bob is told Alice got there first.
    await slack.send_envelope("interactive", approve, envelope_id=envelope_id)
    await acks_for(slack, envelope_id, 2)
    second = await slack.send_envelope("interactive", slack.block_actions(card, "review_approve", "U0BOB"))
    await acks_for(slack, second, 1)
    (told,) = await slack.wait_until(lambda: [e for e in slack.ephemeral if e["user"] == "U0BOB"], timeout=10)
    assert told["channel"] == REVIEW_CHANNEL and "U0ALICE" in told["text"]
    await eventually(lambda: queue_idle(pool), "the worker ran every queued job")

    assert len(mail.sent) == 1
    assert await pool.fetchval("SELECT count(*) FROM reply_outbox") == 1
    assert [e["user"] for e in slack.ephemeral] == ["U0BOB"], "the redelivered click queued nothing"
    assert await pool.fetchval("SELECT count(*) FROM agent_feedback WHERE case_id = $1", case_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM slack_events_seen") == 2  # Alice's click and Bob's
    assert len(top_level(slack)) == 1 and not [c for c in slack.calls("chat.postMessage")
                                               if c.params.get("channel") == REVIEW_CHANNEL
                                               and c.params.get("thread_ts") is None][1:]
    async with pool.acquire() as conn:
        assert (await jobs.depth(conn)).failed == 0
