"""`/case` and `/kb` through Bolt: real slash-command and block_actions payloads dispatched to our
listeners, the real slack_sdk client against the fake Web API, the real database. Asserts on the
ephemeral answers, the Slack calls made and the rows written (or not)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.commands import SlackCommandService
from db import intake as intake_db
from db.cases import ActorType, CaseStatus, transition
from db.drafts import save_draft
from db.pool import transaction
from db.review import assign
from handlers import commands, errors, mrkdwn
from handlers.case_query import CaseQuery, QueryKind, parse_case_query
from handlers.case_views import (
    CaseDetail,
    KbResult,
    KbShare,
    TimelineEntry,
    case_reply,
    kb_results_reply,
    kb_shared_reply,
)
from handlers.services import Services
from tests.fakes.slack import FakeSlack
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import import_demo_kb, review_case

CHANNEL = "C0SUPPORT"
HOSTILE = "Ping <!channel> and <@U1>, see <https://x|y> now"
RAW_MARKUP = ("<!channel>", "<@U1>", "<https://x|y>")
REVIEW_BUTTONS = {"review_approve", "review_edit", "review_reject", "review_escalate", "review_take"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def build_app(slack: FakeSlack, desk: Any, *, ack_budget: float = commands.ACK_BUDGET_SECONDS) -> AsyncApp:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    app = AsyncApp(client=client, process_before_response=False, request_verification_enabled=False)

    async def inject_services(context: dict, next: Any) -> None:  # noqa: A002 (Bolt's name)
        # Only the command listeners are registered: the other services go unused.
        context["services"] = Services(review=None, home=None, commands=desk)  # type: ignore[arg-type]
        await next()

    app.middleware(inject_services)
    errors.register(app)
    commands.register(app, ack_budget=ack_budget)
    return app


@pytest.fixture
def app(pool, slack: FakeSlack) -> AsyncApp:
    return build_app(slack, SlackCommandService(pool, None))


def slash(slack: FakeSlack, command: str, text: str = "", *, user: str = "U0ALICE") -> dict[str, Any]:
    """The payload FakeSlack.send_slash_command sends over Socket Mode."""
    return {
        "token": "verification-token", "team_id": slack.team_id, "api_app_id": slack.app_id, "channel_id": CHANNEL,
        "user_id": user, "command": command, "text": text,
        "response_url": f"{slack.url}/response_url/{uuid.uuid4().hex}", "trigger_id": f"{time.time()}.trigger",
    }


async def dispatch(app: AsyncApp, body: dict[str, Any]) -> dict[str, Any]:
    """The ack's payload (what Slack shows at once). How fast acks come is bench/slack_ack.py's job."""
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    assert response.status == 200, response.body
    return json.loads(response.body) if response.body else {}


async def run_case(app: AsyncApp, slack: FakeSlack, text: str = "", *, user: str = "U0ALICE") -> dict[str, Any]:
    answer = await dispatch(app, slash(slack, "/case", text, user=user))
    assert answer["response_type"] == "ephemeral"
    assert_valid_blocks(answer["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    return answer


def texts(answer: dict[str, Any]) -> str:
    """All the text Slack would render, fallback included."""
    found = [answer.get("text", "")]
    stack: list[Any] = [answer.get("blocks", [])]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text"):
                found.append(node["text"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return "\n".join(found)


async def responses(slack: FakeSlack, count: int = 1, timeout: float = 5) -> list[dict[str, Any]]:
    """The bodies POSTed to response_url (Bolt's respond()), once there are `count` of them."""
    # Polled: the fake's response_url endpoint does not wake FakeSlack.wait_until.
    async with asyncio.timeout(timeout):
        while len(slack.responses) < count:
            await asyncio.sleep(0.01)
    return slack.responses


def block(answer: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in answer["blocks"] if b.get("block_id") == block_id)


def action_ids(answer: dict[str, Any]) -> set[str]:
    return {e["action_id"] for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]}


async def new_case(pool, email: str, subject: str, text: str, *, name: str | None = None) -> tuple[uuid.UUID, int]:
    async with transaction(pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email=email, customer_name=name, channel="email", subject=subject, description=text,
            interaction_type="email_in", email_message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
        )
    return stored.case_id, stored.short_id


async def move(pool, case_id: uuid.UUID, *states: CaseStatus, owner: str | None = None) -> None:
    async with transaction(pool) as conn:
        if owner:
            await assign(conn, case_id, owner)
        for state in states:
            await transition(conn, case_id, state, actor_type=ActorType.REVIEWER, actor_id=owner or "U0SYSTEM")


async def unchanged_snapshot(pool) -> list[Any]:
    """What a read-only command must leave as it was."""
    return [
        await pool.fetchval("SELECT count(*) FROM kb_searches"),
        await pool.fetchval("SELECT count(*) FROM slack_events_seen"),
        await pool.fetchval("SELECT count(*) FROM case_interactions"),
        await pool.fetchval("SELECT count(*) FROM pgqueuer"),
        [tuple(r) for r in await pool.fetch("SELECT case_id, status, owner_slack_user_id FROM cases ORDER BY 1")],
    ]


# ---- /case ---------------------------------------------------------------------------------------------------


async def test_case_by_uuid_shows_state_owner_triage_draft_timeline_and_the_review_buttons(pool, app, slack):
    case_id, draft_id = await review_case(pool)
    case = await pool.fetchrow("SELECT short_id, category, subcategory, priority FROM cases WHERE case_id = $1", case_id)
    draft = await pool.fetchval("SELECT body FROM case_drafts WHERE draft_id = $1", draft_id)
    before = await unchanged_snapshot(pool)

    answer = await run_case(app, slack, str(case_id))

    assert f"CX-{case['short_id']}" in block(answer, "case_header")["text"]["text"]
    header = block(answer, "case_header")["text"]["text"]
    assert case["priority"] in header and case["category"] in header and case["subcategory"] in header
    facts = "\n".join(f["text"] for f in block(answer, "case_facts")["fields"])
    assert "*State*\nAwaiting review" in facts and "*Owner*\nthe bot" in facts
    assert "Mia Wong (mia@example.com)" in facts and "*AI confidence*\n70%" in facts
    assert mrkdwn.escape(draft.split()[0]) in block(answer, "case_draft")["text"]["text"]
    timeline = block(answer, "case_timeline")["text"]["text"]
    assert "Email from the customer" in timeline and "New → Triaged" in timeline and "→ Awaiting review" in timeline
    assert action_ids(answer) == REVIEW_BUTTONS
    # The buttons carry what the review card's own do, so the review listeners handle them.
    values = {json.loads(e["value"])["case_id"] for b in answer["blocks"] if b["type"] == "actions"
              for e in b["elements"]}
    assert values == {str(case_id)}
    assert slack.requests_to("/api/chat.postMessage") == [] and slack.responses == []
    assert await unchanged_snapshot(pool) == before


async def test_case_by_short_id_with_or_without_the_prefix(pool, app, slack):
    case_id, short_id = await new_case(pool, "ann@example.com", "Card declined", "My card was declined at the shop.")
    for text in (f"CX-{short_id}", f"cx-{short_id}", str(short_id), f"  CX-{short_id} "):
        answer = await run_case(app, slack, text)
        assert block(answer, "case_header")["text"]["text"].startswith(f"CX-{short_id} · New")
        assert f"`{case_id}`" in texts(answer)
        # Not actionable in state new: no review buttons.
        assert action_ids(answer) == set()
    missing = await run_case(app, slack, "CX-999999")
    assert "There is no case CX-999999" in texts(missing) and '/case "999999"' in texts(missing)


async def test_case_by_email_lists_a_customers_cases_or_shows_the_only_one(pool, app, slack):
    first, first_short = await new_case(pool, "bo@example.com", "Card declined", "Declined at the shop.")
    second, second_short = await new_case(pool, "bo@example.com", "Transfer late", "My transfer has not arrived.")
    await new_case(pool, "other@example.com", "Other", "Someone else entirely.")

    answer = await run_case(app, slack, "Bo@Example.com")
    assert "2 cases match" in block(answer, "matches_head")["text"]["text"]
    listed = [block(answer, f"match_{i}")["text"]["text"] for i in range(2)]
    assert listed[0].startswith(f"*CX-{second_short}*") and listed[1].startswith(f"*CX-{first_short}*")
    assert "other@example.com" not in texts(answer)

    # Slack sends an email in command text as a mailto link.
    only, only_short = await new_case(pool, "cy@example.com", "Hello", "Just one case.")
    answer = await run_case(app, slack, "<mailto:cy@example.com|cy@example.com>")
    assert block(answer, "case_header")["text"]["text"].startswith(f"CX-{only_short}")
    assert "There are no cases from nobody@example.com" in texts(await run_case(app, slack, "nobody@example.com"))


async def test_case_by_words_lists_several_matches_and_shows_a_single_one(pool, app, slack):
    shorts = set()
    for n in range(3):
        _, short = await new_case(pool, f"r{n}@example.com", f"Refund {n}", f"I want a refund for order {n}.")
        shorts.add(short)
    _, lone = await new_case(pool, "z@example.com", "Stolen wallet", "My wallet was stolen yesterday.")

    answer = await run_case(app, slack, "refund")
    assert "3 cases match" in texts(answer) and "“refund”" in texts(answer)
    listed = {int(block(answer, f"match_{i}")["text"]["text"].split("*")[1].removeprefix("CX-")) for i in range(3)}
    assert listed == shorts

    single = await run_case(app, slack, "wallet stolen")
    assert block(single, "case_header")["text"]["text"].startswith(f"CX-{lone}")
    phrase = await run_case(app, slack, '"refund for order 2"')
    assert "Refund 2" in texts(phrase)
    assert "No case matches “parrot”" in texts(await run_case(app, slack, "parrot"))


async def test_no_argument_shows_my_open_cases_and_the_queue(pool, app, slack):
    await review_case(pool)  # awaiting review
    mine, mine_short = await new_case(pool, "a@example.com", "Mine", "Handled by Alice.")
    await move(pool, mine, CaseStatus.HUMAN_OWNED, owner="U0ALICE")
    done, _ = await new_case(pool, "b@example.com", "Done", "Alice resolved this.")
    await move(pool, done, CaseStatus.HUMAN_OWNED, CaseStatus.RESOLVED, owner="U0ALICE")
    bobs, _ = await new_case(pool, "c@example.com", "Bob's", "Bob has it.")
    await move(pool, bobs, CaseStatus.HUMAN_OWNED, owner="U0BOB")
    up, _ = await new_case(pool, "d@example.com", "Up", "Escalated.")
    await move(pool, up, CaseStatus.TRIAGED, CaseStatus.ESCALATED)
    # The review case has waited an hour and a half.
    await pool.execute("UPDATE case_interactions SET created_at = now() - interval '90 minutes' "
                       "WHERE to_status = 'awaiting_review'")

    answer = await run_case(app, slack, "")
    assert "*Your open cases* (1 open case" in block(answer, "mine_head")["text"]["text"]
    assert block(answer, "mine_0")["text"]["text"].startswith(f"*CX-{mine_short}* · With a person")
    assert "Done" not in texts(answer) and "Bob's" not in texts(answer)
    queue = [f["text"] for f in block(answer, "queue")["fields"]]
    assert queue == ["*Awaiting review*\n1 (oldest waiting 1h 30m)", "*With a person*\n2", "*Escalated*\n1"]

    nobody = await run_case(app, slack, "", user="U0CAROL")
    assert "You own no open cases" in texts(nobody)


@pytest.mark.parametrize("text", ["CX-", "cx-12a", "--bogus", "-v", "help", "!!!", "CX-0"])
async def test_wrong_usage_answers_with_help_and_changes_nothing(pool, app, slack, text):
    case_id, _ = await new_case(pool, "e@example.com", "Anything", "Some text.")
    before = await unchanged_snapshot(pool)
    answer = await run_case(app, slack, text)
    assert "*Look up a case*" in texts(answer) and "`/case CX-1234`" in texts(answer)
    assert await unchanged_snapshot(pool) == before
    assert slack.requests_to("/api/chat.postMessage") == [] and slack.responses == []


def test_parsing_of_case_queries():
    uid = uuid.uuid4()
    assert parse_case_query("") == CaseQuery(QueryKind.MINE)
    assert parse_case_query(str(uid).upper()) == CaseQuery(QueryKind.ID, str(uid), str(uid).upper())
    assert parse_case_query("#1234").value == "1234"
    assert parse_case_query("9" * 20).kind is QueryKind.WORDS  # no short id is that long: a reference, maybe
    assert parse_case_query("CX-" + "9" * 20) is None
    assert parse_case_query("&lt;mia@example.com&gt;").kind is QueryKind.WORDS  # decoded, then not an email
    assert parse_case_query("refund &amp; fees") == CaseQuery(QueryKind.WORDS, "refund & fees", "refund & fees")


async def test_hostile_case_text_comes_out_escaped(pool, app, slack):
    case_id, short = await new_case(pool, "h@example.com", f"Refund {HOSTILE}", f"Hello {HOSTILE} bye",
                                    name=f"Eve {HOSTILE}")
    async with transaction(pool) as conn:
        await save_draft(conn, case_id, body=f"Dear customer {HOSTILE}", cited=[], dropped=[], confidence=0.5,
                         questions=[], risks=[], drafter="extractive", model=None, prompt_version=None,
                         decision="review", reason="test")
    await new_case(pool, "i@example.com", "Refund too", "Refund please.")

    detail = await run_case(app, slack, f"CX-{short}")
    listing = await run_case(app, slack, "refund")
    for answer in (detail, listing):
        rendered = texts(answer)
        assert not any(markup in rendered for markup in RAW_MARKUP), rendered
        assert "&lt;!channel&gt;" in rendered and "&lt;https://x|y&gt;" in rendered
    assert "Dear customer Ping &lt;!channel&gt;" in block(detail, "case_draft")["text"]["text"]


async def test_a_slow_lookup_is_acknowledged_at_once_and_answered_through_the_response_url(pool, slack):
    class SlowDesk(SlackCommandService):
        async def find_case(self, query: CaseQuery):
            await asyncio.sleep(0.3)
            return await super().find_case(query)

    _, short = await new_case(pool, "s@example.com", "Slow", "Take your time.")
    app = build_app(slack, SlowDesk(pool, None), ack_budget=0.05)
    answer = await dispatch(app, slash(slack, "/case", f"CX-{short}"))
    assert answer["response_type"] == "ephemeral" and "Looking" in answer["text"]
    (sent,) = await responses(slack)
    assert sent["response_type"] == "ephemeral"
    assert sent["blocks"][0]["text"]["text"].startswith(f"CX-{short}")


async def test_a_failing_lookup_is_acknowledged_and_the_person_gets_an_error_id(pool, slack):
    class BrokenDesk(SlackCommandService):
        async def find_case(self, query: CaseQuery):
            raise RuntimeError("database is down")

    app = build_app(slack, BrokenDesk(pool, None))
    await dispatch(app, slash(slack, "/case", "CX-1001"))
    (sent,) = await responses(slack)
    assert "error id" in sent["text"] and "database is down" not in sent["text"]


# ---- /kb -----------------------------------------------------------------------------------------------------


def share_click(slack: FakeSlack, answer: dict[str, Any], user: str, action_ts: str) -> dict[str, Any]:
    """The Share button of a private /kb answer, clicked."""
    message = {"channel": CHANNEL, "ts": "1700000000.000100", "blocks": answer["blocks"]}
    (button,) = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return slack.block_actions(message, button["action_id"], user, action_ts=action_ts, ephemeral=True)


def links(blocks: list[dict[str, Any]]) -> list[str]:
    return [u for b in blocks if b["type"] == "section" and "text" in b
            for u in re.findall(r"<(https://[^|>]+)\|", b["text"]["text"])]


async def test_kb_answers_with_five_scored_linked_results_and_share_posts_them_once(pool, app, slack):
    await import_demo_kb(pool)
    answer = await dispatch(app, slash(slack, "/kb", "when will my card arrive"))
    assert answer["response_type"] == "ephemeral"
    assert_valid_blocks(answer["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    results = [b for b in answer["blocks"] if b.get("block_id", "").startswith("kb_") and b["type"] == "section"
               and b["block_id"] != "kb_head"]
    assert len(results) == 5
    assert all(" · score 0." in r["text"]["text"] and "\n>" in r["text"]["text"] for r in results)
    found = links(answer["blocks"])
    assert len(set(found)) == 5 and all(u.startswith("https://help.northwind.example/articles/") for u in found)
    assert "https://help.northwind.example/articles/card-arrival" in found
    assert action_ids(answer) == {"kb_share"}
    logged = await pool.fetchrow("SELECT origin, query FROM kb_searches")
    assert tuple(logged) == ("slack", "when will my card arrive")

    click = share_click(slack, answer, "U0BOB", "1700000050.000200")
    await dispatch(app, click)
    (post,) = await slack.wait_until(lambda: slack.messages)
    assert post["channel"] == CHANNEL
    assert post["text"].startswith("<@U0BOB> shared 5 knowledge-base articles")
    assert "<@U0BOB> shared knowledge-base articles for “when will my card arrive”" in texts(post)
    assert links(post["blocks"]) == found
    assert_valid_blocks(post["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)

    await dispatch(app, click)  # Slack redelivers a click it saw no ack for
    await asyncio.sleep(0.2)
    assert len(slack.messages) == 1
    assert await pool.fetchval("SELECT count(*) FROM kb_searches") == 1, "sharing does not search again"


async def test_share_where_the_bot_cannot_post_tells_the_person(pool, app, slack):
    await import_demo_kb(pool)
    answer = await dispatch(app, slash(slack, "/kb", "card arrival"))
    slack.fail_next("chat.postMessage", "not_in_channel")
    await dispatch(app, share_click(slack, answer, "U0BOB", "1700000060.000300"))
    (told,) = await responses(slack)
    assert "Invite me" in told["text"] and told["response_type"] == "ephemeral"
    assert slack.messages == []


async def test_kb_escapes_the_query_and_helps_without_one(pool, app, slack):
    await import_demo_kb(pool)
    # Slack escapes & < > in command text; decoded, the query is what was typed, and shown escaped.
    answer = await dispatch(app, slash(slack, "/kb", "&lt;!channel&gt; card arrival &lt;@U1&gt;"))
    assert not any(markup in texts(answer) for markup in RAW_MARKUP)
    assert "&lt;!channel&gt; card arrival &lt;@U1&gt;" in texts(answer)
    await dispatch(app, share_click(slack, answer, "U0BOB", "1700000070.000400"))
    (post,) = await slack.wait_until(lambda: slack.messages)
    assert not any(markup in texts(post) for markup in RAW_MARKUP)

    for text in ("", "  ", "help", "?!"):
        helped = await dispatch(app, slash(slack, "/kb", text))
        assert "*Search the knowledge base*" in texts(helped)
    assert await pool.fetchval("SELECT count(*) FROM kb_searches") == 1


# ---- the builders at Slack's limits --------------------------------------------------------------------------


def big_case(**changes: Any) -> CaseDetail:
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    entry = TimelineEntry(at=now, actor_type="customer", actor_id="x" * 300, kind="email_in", message=HOSTILE * 20)
    values: dict[str, Any] = dict(
        case_id=uuid.uuid4(), short_id=10**18, status="awaiting_review", channel="email",
        description=HOSTILE * 1000, created_at=now, customer_email=("e" * 300) + "@example.com",
        subject=HOSTILE * 50, summary=HOSTILE * 100, category="c" * 200, subcategory="s" * 200,
        priority="high", confidence=0.5, owner="U0OWNER", jira_issue_key="J" * 200, customer_name=HOSTILE * 20,
        tier="enterprise", draft_id=uuid.uuid4(), draft=HOSTILE * 1000, drafted_at=now, review_id=uuid.uuid4(),
        timeline=tuple([entry] * 10), timeline_total=500,
    )
    values.update(changes)
    return CaseDetail(**values)


@pytest.mark.parametrize("status", ["awaiting_review", "human_owned", "replied", "made_up_state"])
def test_a_case_with_enormous_hostile_fields_fits_slacks_limits(status):
    reply = case_reply(big_case(status=status, reviewable=status in ("awaiting_review", "human_owned")))
    assert_valid_blocks(reply.blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    rendered = texts({"text": reply.text, "blocks": reply.blocks})
    assert not any(markup in rendered for markup in RAW_MARKUP)
    assert len(reply.text) <= 150
    assert bool(action_ids({"blocks": reply.blocks})) == (status in ("awaiting_review", "human_owned"))
    assert "the latest 10 of 500" in block({"blocks": reply.blocks}, "case_timeline")["text"]["text"]


def test_kb_results_and_share_fit_with_a_huge_query_and_hostile_articles():
    results = [KbResult(article_id=uuid.uuid4(), chunk_id=uuid.uuid4(), title=HOSTILE * 10,
                        url="https://kb.example/a?x=1&y=<2>", snippet=HOSTILE * 100, score=0.0325, category="c")
               for _ in range(5)]
    query = "ü\"\\" * 3000
    reply = kb_results_reply(query, results)
    assert_valid_blocks(reply.blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    (button,) = [e for b in reply.blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(button["value"]) <= mrkdwn.BUTTON_VALUE
    share = KbShare.from_value(button["value"])
    assert share.refs == tuple((r.article_id, r.chunk_id) for r in results) and query.startswith(share.query)
    shared = kb_shared_reply("U0BOB", share.query, results)
    assert_valid_blocks(shared.blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    for payload in (reply, shared):
        rendered = texts({"text": payload.text, "blocks": payload.blocks})
        assert not any(markup in rendered for markup in RAW_MARKUP)
        assert "<https://kb.example" not in rendered, "a URL with <, > is shown as text, not a link"


def test_queue_wait_is_shown_in_days_hours_or_minutes():
    from handlers.case_views import MyCases, QueueSize, my_cases_reply

    for wait, shown in ((timedelta(minutes=5), "5m"), (timedelta(hours=2, minutes=3), "2h 3m"),
                        (timedelta(days=3, hours=4), "3d 4h")):
        reply = my_cases_reply("U0A", MyCases(cases=(), total=0, queue=QueueSize(
            awaiting_review=2, oldest_wait=wait, human_owned=0, escalated=0)))
        assert f"2 (oldest waiting {shown})" in texts({"blocks": reply.blocks})
