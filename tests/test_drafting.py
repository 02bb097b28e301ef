"""Workflow 2: retrieval, cited drafts (Claude through the real SDK against the fake Anthropic API,
or extractive offline), the auto-send policy, and replies sent exactly once (fake Gmail)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic

from pipelines.adapters.anthropic_llm import TOOL_NAME, AnthropicLLM
from pipelines.adapters.gmail_mailbox import AnswerLost
from pipelines.drafting.drafters import ClaudeDrafter, ExtractiveDrafter, FallbackDrafter, check_citations
from pipelines.drafting.send_policy import PolicyInput, decide
from pipelines.drafting.step import draft_case
from pipelines.kb.search import Hit
from pipelines.replies.outbox import Channels, SendResult, approve_draft, send_reply
from prompts import load
from tests.cli_runner import CX, cx_env
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import Status
from tests.support.cases import POLICY, SENDER, drafting_case, import_demo_kb, jobs_queued, review_case
from tests.support.triage import TAXONOMY

ROOT = Path(__file__).resolve().parent.parent

# ---- the policy: one test per rule ----------------------------------------------------------------------

GOOD = PolicyInput(triage_confidence=0.95, draft_confidence=0.92, category="card_delivery", category_auto_send=True,
                   tier="standard", valid_citations=1, drafter="claude")


def test_a_draft_that_passes_every_rule_is_sent():
    decision = decide(GOOD, high=0.85, always_review_tiers=frozenset({"enterprise"}))
    assert decision.auto_send and "1 cited article" in decision.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"drafter": "extractive"}, "extractive"),
        ({"triage_confidence": 0.84}, "triage confidence 0.84 is below 0.85"),
        ({"draft_confidence": 0.5}, "draft confidence 0.50 is below 0.85"),
        ({"category_auto_send": False, "category": "security"}, "category security is not marked auto_send"),
        ({"tier": "Enterprise"}, "Enterprise customers are always reviewed"),
        ({"valid_citations": 0}, "cites no retrieved knowledge-base article"),
        ({"risks": ("customer threatens legal action",)}, "flagged risks: customer threatens legal action"),
        ({"questions": ("Which card?",)}, "asks the customer for missing information"),
    ],
)
def test_each_rule_alone_sends_the_draft_to_review(change, reason):
    item = PolicyInput(**{**GOOD.__dict__, **change})
    decision = decide(item, high=0.85, always_review_tiers=frozenset({"enterprise"}))
    assert not decision.auto_send
    assert reason in decision.reason


def test_exactly_at_the_threshold_is_confident_enough():
    item = PolicyInput(**{**GOOD.__dict__, "triage_confidence": 0.85, "draft_confidence": 0.85})
    assert decide(item, high=0.85, always_review_tiers=frozenset()).auto_send


# ---- citations --------------------------------------------------------------------------------------------

def hit(title: str = "When will my card arrive?") -> Hit:
    return Hit(article_id=uuid.uuid4(), title=title, url="https://help.example/a", category="card_delivery",
               subcategory="card_arrival", chunk_id=uuid.uuid4(), heading=title, content="5-7 working days.",
               snippet="5-7 working days.", score=0.03, vector_rank=1, text_rank=1)


def test_citations_outside_the_retrieved_set_are_dropped():
    a, b = hit(), hit("Activate your card")
    invented = str(uuid.uuid4())
    kept, dropped = check_citations([str(b.article_id).upper(), invented, str(b.article_id), "kb-42"], [a, b])
    assert kept == [b.article_id]
    assert dropped == [invented, "kb-42"]


# ---- the drafting step -------------------------------------------------------------------------------------

def claude_drafter(fake: FakeAnthropic) -> FallbackDrafter:
    client = AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=0, timeout=5)
    claude = ClaudeDrafter(AnthropicLLM(client), model="claude-sonnet-4-6", system=load("draft"),
                           request=load("draft_request"), company="Northwind Bank")
    return FallbackDrafter(claude, ExtractiveDrafter(company="Northwind Bank", high=0.85))


async def test_a_confident_cited_claude_draft_is_queued_for_sending(pool):
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.95)
    async with FakeAnthropic() as fake:
        drafter = claude_drafter(fake)
        # Cite the first article the request shows, and an id that was never retrieved.
        invented = str(uuid.uuid4())
        fake.script(lambda body: fake.tool_use(TOOL_NAME, {
            "reply": "Hi Mia,\n\nCards arrive within 5-7 working days.\n\nBest regards,\nNorthwind Bank Support",
            "cited_article_ids": [body["messages"][0]["content"].split('<article id="')[1].split('"')[0], invented],
            "confidence": 0.93, "questions": [], "risks": [],
        }))
        outcome = await draft_case(pool, drafter, None, TAXONOMY, POLICY, case_id)
        request = fake.requests_to("/v1/messages")[0].json
    assert outcome is not None and outcome.decision.auto_send, outcome.decision.reason
    assert outcome.hits[0].title == "When will my card arrive?"
    assert "<customer_message>" in request["messages"][0]["content"]
    async with pool.acquire() as conn:
        draft = await conn.fetchrow("SELECT * FROM case_drafts WHERE case_id = $1", case_id)
        out = await conn.fetchrow("SELECT * FROM reply_outbox WHERE case_id = $1", case_id)
        status = await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        search = await conn.fetchrow("SELECT origin, results FROM kb_searches WHERE case_id = $1", case_id)
    assert draft["decision"] == "auto_send" and draft["drafter"] == "claude"
    assert draft["cited_article_ids"] == [outcome.hits[0].article_id]
    assert draft["dropped_citations"] == [invented]
    assert status == "sending"
    assert out["channel"] == "email" and out["to_address"] == "mia@example.com" and out["status"] == "pending"
    assert out["subject"] == "Re: Card not here" and out["in_reply_to"] == "<q1@mail.example.com>"
    assert "CX-" in out["body"] and out["message_id"] == f"<cx-{draft['draft_id']}@northwind.example>"
    assert search["origin"] == "pipeline" and json.loads(search["results"])
    assert ("reply.send", {"outbox_id": str(out["outbox_id"])}) in await jobs_queued(pool)


async def test_offline_the_extractive_draft_always_goes_to_review(pool):
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.97)
    drafter = FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85))
    outcome = await draft_case(pool, drafter, None, TAXONOMY, POLICY, case_id)
    assert outcome is not None and not outcome.decision.auto_send
    assert outcome.draft.confidence < 0.85
    assert outcome.draft.reply.startswith("Hi Mia,") and "When will my card arrive?" in outcome.draft.reply
    assert "**" not in outcome.draft.reply
    async with pool.acquire() as conn:
        draft = await conn.fetchrow("SELECT decision, decision_reason FROM case_drafts WHERE case_id = $1", case_id)
        status = await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        assert await conn.fetchval("SELECT count(*) FROM reply_outbox") == 0
    assert draft["decision"] == "review" and "extractive" in draft["decision_reason"]
    assert status == "awaiting_review"
    assert ("case.review_card", {"case_id": str(case_id)}) in await jobs_queued(pool)
    # A retried draft job finds the case moved on and does nothing.
    assert await draft_case(pool, drafter, None, TAXONOMY, POLICY, case_id) is None


async def test_claude_failing_falls_back_to_an_extractive_draft_for_review(pool):
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.97)
    async with FakeAnthropic() as fake:
        fake.script(Status(529))
        outcome = await draft_case(pool, claude_drafter(fake), None, TAXONOMY, POLICY, case_id)
    assert outcome is not None and outcome.draft.drafter == "extractive" and not outcome.decision.auto_send
    assert any("Claude failed" in r for r in outcome.draft.risks)
    usage = await pool.fetchrow("SELECT step, success FROM llm_usage WHERE case_id = $1", case_id)
    assert usage["step"] == "draft" and usage["success"] is False


# ---- replies, exactly once -----------------------------------------------------------------------------

async def test_an_approved_draft_is_sent_once_in_the_customers_thread(pool, gmail):
    fake, mailbox = gmail
    case_id, draft_id = await review_case(pool)
    approval = await approve_draft(pool, draft_id, "U_REVIEWER", SENDER)
    assert approval.outcome == "queued"
    channels = Channels(mailbox, None)
    assert await send_reply(pool, channels, SENDER, approval.outbox_id) == SendResult.SENT
    assert await send_reply(pool, channels, SENDER, approval.outbox_id) == SendResult.ALREADY_SENT
    (sent,) = fake.sent
    message = sent.message
    assert message["To"] == "mia@example.com" and message["Subject"] == "Re: Card not here"
    assert message["In-Reply-To"] == message["References"] == "<q1@mail.example.com>"
    assert message["X-CX-Draft-Id"] == str(draft_id)
    assert message["Message-ID"] == f"<cx-{draft_id}@northwind.example>"
    body = message.get_content()
    assert body.startswith("Hi Mia,") and "Your case reference: CX-" in body
    async with pool.acquire() as conn:
        out = await conn.fetchrow("SELECT status, provider_message_id, approved_by FROM reply_outbox")
        case = await conn.fetchrow("SELECT status, first_response_at FROM cases WHERE case_id = $1", case_id)
        timeline = await conn.fetchval(
            "SELECT count(*) FROM case_interactions WHERE case_id = $1 AND interaction_type = 'email_out'", case_id)
    assert (out["status"], out["provider_message_id"], out["approved_by"]) == ("sent", sent.id, "U_REVIEWER")
    assert case["status"] == "replied" and case["first_response_at"] is not None
    assert timeline == 1


async def test_the_same_draft_approved_twice_at_once_is_sent_once(pool, gmail):
    fake, mailbox = gmail
    _, draft_id = await review_case(pool)
    first, second = await asyncio.gather(
        approve_draft(pool, draft_id, "U_ALICE", SENDER), approve_draft(pool, draft_id, "U_BOB", SENDER)
    )
    outcomes = sorted([first.outcome, second.outcome])
    assert outcomes == ["already approved", "queued"]
    winner = first if first.outcome == "queued" else second
    loser = second if winner is first else first
    assert loser.approved_by == winner.approved_by and loser.outbox_id == winner.outbox_id
    jobs = [j for j in await jobs_queued(pool) if j[0] == "reply.send"]
    assert len(jobs) == 1
    channels = Channels(mailbox, None)
    results = await asyncio.gather(*(send_reply(pool, channels, SENDER, winner.outbox_id) for _ in range(3)))
    assert results.count(SendResult.SENT) == 1
    assert len(fake.sent) == 1
    assert await pool.fetchval("SELECT count(*) FROM reply_outbox") == 1


async def test_a_lost_answer_is_found_in_sent_mail_instead_of_sending_again(pool, gmail):
    fake, mailbox = gmail
    _, draft_id = await review_case(pool)
    approval = await approve_draft(pool, draft_id, "U_REVIEWER", SENDER)
    fake.fail_after_send_next(code=None)  # Gmail stores it; the worker never hears back
    with pytest.raises(AnswerLost):
        await send_reply(pool, Channels(mailbox, None), SENDER, approval.outbox_id)
    assert await pool.fetchval("SELECT status FROM reply_outbox") == "sending"
    assert await send_reply(pool, Channels(mailbox, None), SENDER, approval.outbox_id) == SendResult.FOUND_SENT
    (sent,) = fake.sent
    assert await pool.fetchval("SELECT provider_message_id FROM reply_outbox") == sent.id


async def test_a_worker_killed_after_gmail_accepted_the_reply_does_not_send_it_twice(pool, dsn, gmail, tmp_path):
    """The real worker process: killed (SIGKILL) while Gmail holds the sent message and the outbox row
    still says `sending`. The restarted worker finds the message by its Message-ID: one email."""
    fake, _ = gmail
    case_id, draft_id = await review_case(pool)
    approval = await approve_draft(pool, draft_id, "U_REVIEWER", SENDER)
    fake.hang_after_send_next()
    env = cx_env(DATABASE_URL=dsn, EMBEDDINGS="none", GMAIL_TOKEN_FILE=str(tmp_path / "token.json"),
                 GMAIL_API_URL=fake.url, SUPPORT_EMAIL="support@northwind.example", JOB_HEARTBEAT_SECONDS="1",
                 JOB_RETRY_BASE_SECONDS="0.2", TAXONOMY_PATH=str(ROOT / "prompts" / "taxonomy-banking.yaml"))

    async def worker() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*CX, "run", "--roles", "worker", env=env, cwd=ROOT,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def until(predicate, what: str) -> None:
        for _ in range(300):
            if await predicate():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting until {what}")

    async def outbox_status() -> str:
        return await pool.fetchval("SELECT status FROM reply_outbox WHERE outbox_id = $1", approval.outbox_id)

    async def accepted() -> bool:
        return len(fake.sent) == 1

    async def recorded() -> bool:
        return await outbox_status() == "sent"

    first = await worker()
    try:
        await until(accepted, "Gmail accepted the reply")
        first.kill()
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
    assert await outbox_status() == "sending"

    second = await worker()
    try:
        await until(recorded, "the restarted worker recorded the reply")
    finally:
        second.kill()
        await second.wait()
    (sent,) = fake.sent
    assert await pool.fetchval("SELECT provider_message_id FROM reply_outbox") == sent.id
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "replied"
