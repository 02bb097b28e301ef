"""App Home, the "Create support case" message shortcut and card-thread notes, through Bolt: real payload
shapes dispatched to our listeners, the shortcut's job run as the worker runs it, the real slack_sdk client
against the fake Web API. Asserts on the Slack calls made and on the database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.home import SlackHomeService
from bot.settings import Settings
from db import intake as intake_db
from db.cases import ActorType, CaseStatus, transition
from db.pool import transaction
from handlers import errors, home, shortcut
from handlers.home_views import HomeFacts, MyCase, TodayCounts, WaitingCase, home_view
from handlers.services import Services
from pipelines.jobs import JobName, ShortcutRequest
from tests.fakes.slack import FakeSlack

S = CaseStatus
GENERAL = "C0GENERAL"
REVIEW_CHANNEL = "C0REVIEW"
HOSTILE = "<!channel> pay <@U0BOSS> now <https://evil.example|your bank> & more"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("U0DANA", name="Dana Customer", email="Dana.Customer@Example.com")
        fake.add_user("U0NOMAIL", name="No Mail")
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")


@pytest.fixture
def desk(pool, client: AsyncWebClient) -> SlackHomeService:
    return SlackHomeService(pool, client, Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL))


@pytest.fixture
def app(desk: SlackHomeService, client: AsyncWebClient) -> AsyncApp:
    # The production app acks before its listeners finish; here they finish before dispatch returns, so the
    # test sees their effects, and the three-second bound below then covers the whole listener.
    app = AsyncApp(client=client, process_before_response=True)

    async def inject_services(context: dict, next: Any) -> None:  # noqa: A002 (Bolt's name)
        # Only the App Home and shortcut listeners are registered: the other services go unused.
        context["services"] = Services(review=None, home=desk, commands=None)  # type: ignore[arg-type]
        await next()

    app.middleware(inject_services)
    errors.register(app)
    home.register(app)
    shortcut.register(app)
    return app


async def dispatch(app: AsyncApp, body: dict[str, Any]) -> int:
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    return response.status


def event_body(slack: FakeSlack, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "verification-token", "team_id": slack.team_id, "api_app_id": slack.app_id, "event": event,
        "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": slack.team_id, "user_id": slack.bot_user_id, "is_bot": True}],
    }


def shortcut_body(slack: FakeSlack, message: dict[str, Any], *, user: str = "U0AGENT", channel: str = GENERAL,
                  action_ts: str | None = None) -> dict[str, Any]:
    return {
        "type": "message_action", "token": "verification-token", "action_ts": action_ts or f"{time.time():.6f}",
        "team": {"id": slack.team_id, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": slack.team_id},
        "channel": {"id": channel, "name": "general"}, "is_enterprise_install": False, "enterprise": None,
        "callback_id": "create_support_case", "trigger_id": f"{time.time()}.trigger",
        "response_url": f"{slack.url}/response_url/{uuid.uuid4().hex}",
        "message_ts": message["ts"], "message": {"type": "message", "team": slack.team_id, **message},
    }


def customer_message(text: str = "My card was charged twice for one order", *, user: str = "U0DANA",
                     ts: str = "1712000000.000100") -> dict[str, Any]:
    return {"user": user, "ts": ts, "text": text}


async def run_shortcut_jobs(pool, desk: SlackHomeService, *, together: bool = False) -> int:
    """Run the queued shortcut jobs as the worker would (one after the other, or all at once)."""
    rows = await pool.fetch("SELECT id, payload FROM pgqueuer WHERE entrypoint = $1 ORDER BY id", JobName.SLACK_CASE)
    runs = [desk.create_case_from_shortcut(ShortcutRequest.from_payload(bytes(r["payload"]))) for r in rows]
    if together:
        await asyncio.gather(*runs)
    else:
        for run in runs:
            await run
    await pool.execute("DELETE FROM pgqueuer WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
    return len(rows)


def thread_replies(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["thread_ts"] is not None]


# ---- the shortcut -----------------------------------------------------------------------------------------

async def test_the_shortcut_makes_one_slack_case_and_answers_in_the_thread(pool, slack, desk, app):
    message = customer_message()
    assert await dispatch(app, shortcut_body(slack, message)) == 200
    assert await pool.fetchval("SELECT count(*) FROM cases") == 0, "the case is the job's work, not the listener's"
    assert await run_shortcut_jobs(pool, desk) == 1

    case = await pool.fetchrow(
        "SELECT c.case_id, c.short_id, c.channel, c.external_id, c.description, c.subject, cu.email, cu.name "
        "FROM cases c JOIN customers cu USING (customer_id)")
    assert case["channel"] == "slack" and case["external_id"] == f"slack:{GENERAL}:{message['ts']}"
    assert case["description"] == message["text"] and case["subject"] == message["text"]
    assert (case["email"], case["name"]) == ("dana.customer@example.com", "Dana Customer")
    first = await pool.fetchrow("SELECT interaction_type, actor_type FROM case_interactions "
                                "WHERE case_id = $1 ORDER BY created_at LIMIT 1", case["case_id"])
    assert tuple(first) == ("slack_in", "customer")
    triage = await pool.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = 'case.triage'")
    assert [json.loads(bytes(r["payload"])) for r in triage] == [{"case_id": str(case["case_id"])}]

    (reply,) = thread_replies(slack)
    assert (reply["channel"], reply["thread_ts"]) == (GENERAL, message["ts"])
    assert f"CX-{case['short_id']}" in reply["text"] and "<@U0AGENT>" in reply["text"]
    assert [c.params["user"] for c in slack.calls("users.info")] == ["U0DANA"]


async def test_a_redelivered_shortcut_makes_nothing_twice(pool, slack, desk, app):
    body = shortcut_body(slack, customer_message(), action_ts="1712000100.000200")
    assert await dispatch(app, body) == 200
    assert await dispatch(app, body) == 200  # Slack redelivers an envelope it saw no ack for
    assert await run_shortcut_jobs(pool, desk) == 1
    assert await pool.fetchval("SELECT count(*) FROM cases") == 1
    assert len(thread_replies(slack)) == 1 and slack.ephemeral == []


async def test_a_second_shortcut_on_the_same_message_finds_its_case_and_tells_only_its_user(pool, slack, desk, app):
    message = customer_message()
    await dispatch(app, shortcut_body(slack, message, user="U0AGENT"))
    assert await run_shortcut_jobs(pool, desk) == 1
    await dispatch(app, shortcut_body(slack, message, user="U0OTHER"))
    assert await run_shortcut_jobs(pool, desk) == 1
    short_id = await pool.fetchval("SELECT short_id FROM cases")
    assert await pool.fetchval("SELECT count(*) FROM cases") == 1
    assert len(thread_replies(slack)) == 1
    (told,) = slack.ephemeral
    assert told["user"] == "U0OTHER" and f"CX-{short_id}" in told["text"]


async def test_two_shortcuts_run_at_once_answer_the_thread_once(pool, slack, desk, app):
    message = customer_message()
    await dispatch(app, shortcut_body(slack, message, user="U0AGENT"))
    await dispatch(app, shortcut_body(slack, message, user="U0OTHER"))
    assert await run_shortcut_jobs(pool, desk, together=True) == 2
    assert await pool.fetchval("SELECT count(*) FROM cases") == 1
    (answer,) = thread_replies(slack)
    (told,) = slack.ephemeral
    answered_for = "U0AGENT" if "<@U0AGENT>" in answer["text"] else "U0OTHER"
    assert told["user"] == ({"U0AGENT", "U0OTHER"} - {answered_for}).pop()


async def test_a_failed_answer_is_retried_by_the_job_and_posted_once(pool, slack, desk, app):
    body = shortcut_body(slack, customer_message())
    await dispatch(app, body)
    payload = bytes(await pool.fetchval("SELECT payload FROM pgqueuer WHERE entrypoint = $1", JobName.SLACK_CASE))
    slack.fail_next("chat.postMessage", "internal_error")
    with pytest.raises(Exception, match="internal_error"):
        await desk.create_case_from_shortcut(ShortcutRequest.from_payload(payload))
    assert thread_replies(slack) == []
    await desk.create_case_from_shortcut(ShortcutRequest.from_payload(payload))  # the retry
    assert await pool.fetchval("SELECT count(*) FROM cases") == 1
    assert len(thread_replies(slack)) == 1 and slack.ephemeral == []


async def test_an_author_without_an_email_gets_a_placeholder_address(pool, slack, desk, app):
    await dispatch(app, shortcut_body(slack, customer_message(user="U0NOMAIL", ts="1712000000.000300")))
    await dispatch(app, shortcut_body(slack, customer_message(user="U0GONE", ts="1712000000.000400")))  # unknown
    await dispatch(app, shortcut_body(slack, {"bot_id": "B0OTHER", "ts": "1712000000.000500", "text": "Build failed"}))
    assert await run_shortcut_jobs(pool, desk) == 3
    emails = await pool.fetch("SELECT cu.email FROM cases c JOIN customers cu USING (customer_id) ORDER BY c.short_id")
    assert [r["email"] for r in emails] == ["u0nomail@slack.invalid", "u0gone@slack.invalid", "b0other@slack.invalid"]
    assert len(slack.calls("users.info")) == 2, "a bot's message needs no look-up"
    assert len(thread_replies(slack)) == 3


async def test_where_the_bot_cannot_post_the_reporter_is_told_through_the_response_url(pool, slack, desk, app):
    await dispatch(app, shortcut_body(slack, customer_message(), channel="C0PRIVATE"))
    slack.fail_next("chat.postMessage", "not_in_channel")
    assert await run_shortcut_jobs(pool, desk) == 1
    short_id = await pool.fetchval("SELECT short_id FROM cases")
    assert thread_replies(slack) == []
    (response,) = slack.responses
    assert f"CX-{short_id}" in response["text"] and response["response_type"] == "ephemeral"


async def test_a_reply_in_a_thread_is_answered_in_that_thread(pool, slack, desk, app):
    message = {**customer_message(ts="1712000000.000900"), "thread_ts": "1712000000.000800"}
    await dispatch(app, shortcut_body(slack, message))
    await run_shortcut_jobs(pool, desk)
    (reply,) = thread_replies(slack)
    assert reply["thread_ts"] == "1712000000.000800"
    assert await pool.fetchval("SELECT external_id FROM cases") == f"slack:{GENERAL}:1712000000.000900"


# ---- card threads -----------------------------------------------------------------------------------------

CARD_TS = "1712000500.000100"


async def card_case(pool) -> UUID:
    """A case whose review card sits in the review channel at CARD_TS."""
    case_id, _ = await make_case(pool, "Card not delivered", [S.TRIAGED, S.AWAITING_REVIEW])
    await pool.execute("INSERT INTO slack_messages (case_id, purpose, channel_id, ts) VALUES ($1, 'review_card', $2, $3)",
                       case_id, REVIEW_CHANNEL, CARD_TS)
    return case_id


def reply(text: str, *, user: str = "U0ALICE", thread_ts: str = CARD_TS, ts: str = "1712000600.000100",
          channel: str = REVIEW_CHANNEL, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "thread_ts": thread_ts,
            "event_ts": ts, "channel_type": "channel", **extra}


async def notes(pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch("SELECT case_id, actor_type, actor_id, message FROM case_interactions "
                            "WHERE interaction_type = 'note' ORDER BY created_at")
    return [tuple(r) for r in rows]


async def test_a_reply_in_a_card_thread_is_stored_once_as_an_internal_note(pool, slack, app):
    case_id = await card_case(pool)
    body = event_body(slack, reply("Called the customer, card is on its way"), "Ev0NOTE1")
    assert await dispatch(app, body) == 200
    assert await dispatch(app, body) == 200  # redelivered
    assert await notes(pool) == [(case_id, "reviewer", "U0ALICE", "Called the customer, card is on its way")]
    await dispatch(app, event_body(slack, reply("Thanks", user="U0BOB", ts="1712000700.000100")))
    assert [n[2:] for n in await notes(pool)][-1] == ("U0BOB", "Thanks")
    assert slack.messages == [] and slack.ephemeral == [], "notes are kept quietly"


async def test_bots_and_messages_outside_card_threads_store_nothing(pool, slack, app):
    await card_case(pool)
    for event in (
        reply("posted by a bot", user="U0OTHERBOT", bot_id="B0OTHER", subtype="bot_message"),
        reply("our own bot", user=slack.bot_user_id, bot_id=slack.bot_id),
        reply("in some other thread", thread_ts="1712000400.000100"),
        reply("same ts, other channel", channel=GENERAL),
        {**reply("a top-level message"), "thread_ts": None},
        reply("the card itself", ts=CARD_TS),
        reply("edited", subtype="message_changed"),
    ):
        assert await dispatch(app, event_body(slack, event)) == 200
    assert await notes(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM slack_events_seen") == 0


# ---- App Home ---------------------------------------------------------------------------------------------

async def make_case(pool, subject: str, path: list[CaseStatus], *, owner: str | None = None,
                    days_ago: int = 0) -> tuple[UUID, int]:
    async with pool.acquire() as conn:
        stored = await intake_db.create_case(
            conn, customer_email=f"{uuid.uuid4().hex[:8]}@example.com", customer_name=None, channel="webhook",
            subject=subject, description=f"About: {subject}", interaction_type="webhook_in",
            external_id=uuid.uuid4().hex)
    async with transaction(pool) as conn:
        for status in path:
            await transition(conn, stored.case_id, status, actor_type=ActorType.SYSTEM, actor_id="test")
        if owner:
            await conn.execute("UPDATE cases SET owner_slack_user_id = $2 WHERE case_id = $1", stored.case_id, owner)
        if days_ago:
            back = timedelta(days=days_ago)
            await conn.execute("UPDATE cases SET created_at = created_at - $2::interval WHERE case_id = $1",
                               stored.case_id, back)
            await conn.execute("UPDATE case_interactions SET created_at = created_at - $2::interval WHERE case_id = $1",
                               stored.case_id, back)
    return stored.case_id, stored.short_id


def home_opened(user: str, tab: str = "home") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": tab,
            "event_ts": f"{time.time():.6f}"}


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


async def test_app_home_shows_the_queue_my_cases_and_todays_numbers(pool, slack, app):
    _, oldest = await make_case(pool, HOSTILE, [S.TRIAGED, S.AWAITING_REVIEW], days_ago=2)
    await make_case(pool, "Login loop", [S.TRIAGED, S.AWAITING_REVIEW])
    _, escalated = await make_case(pool, "Fraud on my account", [S.TRIAGED, S.ESCALATED], owner="U0ALICE")
    replied_id, _ = await make_case(pool, "Card arrival", [S.TRIAGED, S.DRAFTING, S.SENDING, S.REPLIED])
    await pool.execute("INSERT INTO reply_outbox (case_id, draft_key, channel, to_address, body, status, sent_at) "
                       "VALUES ($1, 'draft-1', 'email', 'x@example.com', 'Hello', 'sent', now())", replied_id)
    _, taken = await make_case(pool, "Refund please", [S.HUMAN_OWNED], owner="U0ALICE")
    await make_case(pool, "Old thing", [S.HUMAN_OWNED, S.CLOSED], owner="U0ALICE")
    await make_case(pool, "Bob's case", [S.HUMAN_OWNED], owner="U0BOB")

    assert await dispatch(app, event_body(slack, home_opened("U0ALICE"))) == 200
    view = slack.home_tabs["U0ALICE"]
    assert view["type"] == "home" and len(view["blocks"]) <= 100

    queue = block(view, "home_queue")["text"]["text"]
    assert "2 cases are waiting" in queue and f"CX-{oldest}" in queue and "waiting 2 d" in queue
    assert "&lt;!channel&gt;" in queue and "&lt;@U0BOSS&gt;" in queue and "&amp; more" in queue
    assert "<!channel>" not in json.dumps(view) and "<@U0BOSS>" not in json.dumps(view)

    mine = [b["text"]["text"] for b in view["blocks"] if b.get("block_id", "").startswith("home_mine_")]
    assert len(mine) == 2
    assert {line.split("*")[1] for line in mine} == {f"CX-{escalated}", f"CX-{taken}"}
    assert any("Escalated" in line for line in mine) and any("With a person" in line for line in mine)

    today = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in block(view, "home_today")["fields"]}
    assert today == {"Cases created": "6", "Replied": "1 (1 auto-sent)", "Sent to review": "1", "Escalated": "1"}

    assert await dispatch(app, event_body(slack, home_opened("U0BOB"))) == 200
    bob = [b["text"]["text"] for b in slack.home_tabs["U0BOB"]["blocks"]
           if b.get("block_id", "").startswith("home_mine_")]
    assert len(bob) == 1 and "Bob" in bob[0]


async def test_the_messages_tab_publishes_nothing(pool, slack, app):
    assert await dispatch(app, event_body(slack, home_opened("U0ALICE", tab="messages"))) == 200
    assert slack.home_tabs == {} and slack.calls("views.publish") == []


async def test_an_empty_desk_says_so(pool, slack, app):
    await dispatch(app, event_body(slack, home_opened("U0ALICE")))
    view = slack.home_tabs["U0ALICE"]
    assert "Nothing is waiting" in block(view, "home_queue")["text"]["text"]
    assert "No open cases" in block(view, "home_mine_none")["text"]["text"]


def test_the_home_view_lists_ten_of_my_cases_and_counts_the_rest():
    now = datetime(2024, 4, 2, 12, 0, tzinfo=UTC)
    facts = HomeFacts(
        queue_size=1, oldest=WaitingCase(1001, "x" * 5000, now - timedelta(minutes=125)),
        my_cases=tuple(MyCase(2000 + i, "human_owned", f"{HOSTILE} {i}") for i in range(12)), my_total=40,
        today=TodayCounts(created=3, replied=0, auto_sent=0, sent_to_review=0, escalated=0), as_of=now,
    )
    view = home_view(facts)
    mine = [b for b in view["blocks"] if b.get("block_id", "").startswith("home_mine_")]
    assert len(mine) == 11 and mine[-1]["elements"][0]["text"] == "…and 30 more"
    assert "waiting 2 h 5 min" in block(view, "home_queue")["text"]["text"]
    assert all(len(b["text"]["text"]) <= 3000 for b in view["blocks"] if b["type"] == "section" and "text" in b)
    assert "<!channel>" not in json.dumps(view)
