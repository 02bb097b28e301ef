"""What leaves the building: an email full of personal data goes through intake, triage (Claude, with
few-shot examples found by OpenAI embeddings) and drafting (Claude over OpenAI-ranked articles) in the
product's own jobs, against the recording fakes. No planted value is in any request either provider
received; the reply the customer gets has the values back and no placeholder; the case keeps its map."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from email.message import EmailMessage

import pytest

from bot.deps import Deps, build_deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from db import examples as examples_db
from db import pii_maps
from db.pool import transaction
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.drafting.send_policy import PolicyInput, decide
from pipelines.intake.email import intake_email
from pipelines.jobs import JobName
from pipelines.kb.documents import collect, read_file
from pipelines.kb.ingest import ingest
from pipelines.privacy.redaction import PLACEHOLDER, luhn_ok
from pipelines.review import decisions as review
from pipelines.triage.local.triager import embed_missing
from tests.cli_runner import ROOT
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gmail import FakeGmail
from tests.fakes.openai import FakeOpenAI
from tests.support.incidents import IncidentCase, insert_incident
from tests.support.triage import answer

CARD, IBAN, PHONE = "4539 1488 0343 6467", "GB82 WEST 1234 5698 7654 32", "+44 7911 123456"
EMAIL, SSN, PASSWORD = "zoe.park@example.org", "123-45-6789", "hunter2!"
OTHER_EMAIL = "liam.other@example.net"  # another customer's, in a labelled example used as a few-shot
PLANTED = (CARD, CARD.replace(" ", ""), IBAN, IBAN.replace(" ", ""), PHONE, "7911 123456", EMAIL, SSN, PASSWORD,
           OTHER_EMAIL)

BODY = f"""Hello,

My new card still has not arrived after ten days. My old card {CARD} expires this month.
Please refund the card fee to {IBAN}. You can call me on {PHONE} or write to {EMAIL}.
My SSN is {SSN} if you need it, and my online banking password: {PASSWORD}
Thanks,
Zoe Park
"""


def _email() -> bytes:
    m = EmailMessage()
    m["From"] = f"Zoe Park <{EMAIL}>"
    m["To"] = "support@example.com"
    m["Subject"] = "New card not arrived"
    m["Message-ID"] = "<pii-1@mail.example.org>"
    m.set_content(BODY)
    return bytes(m)


def _draft(body: dict) -> dict:
    """Claude's draft: cites the first article it was given and writes with the placeholders it saw."""
    sent = json.dumps(body)
    article = re.search(r'article id=\\"([0-9a-f-]{36})', sent)
    assert article is not None, "drafting was given no article"
    phone = "[PHONE_1]" if "[PHONE_1]" in sent else "the number you gave us"
    reply = (f"Hi Zoe,\n\nNew cards arrive within 5-7 working days; we will call you on {phone} as soon as "
             "yours ships. Please never send your password by email: change it in online banking now.\n\n"
             "Best regards,\nNorthwind Bank Support")
    return FakeAnthropic.tool_use(TOOL_NAME, {"reply": reply, "cited_article_ids": [article[1]], "confidence": 0.95,
                                              "questions": [], "risks": []})


@pytest.fixture
async def providers(tmp_path):
    token = tmp_path / "token.json"
    token.write_text(json.dumps({"token": "t", "refresh_token": "r", "client_id": "c", "client_secret": "s",
                                 "expiry": "2099-01-01T00:00:00Z"}))
    async with FakeAnthropic() as claude, FakeOpenAI() as openai, FakeGmail() as gmail:
        yield claude, openai, gmail, token


async def _run_flow(pool, make_settings, providers, *, redaction: bool, drafted=_draft):
    claude, openai, gmail, token = providers
    settings = make_settings(
        anthropic_api_key="test-key", anthropic_base_url=claude.url, openai_api_key="test-key",
        openai_base_url=f"{openai.url}/v1", embeddings="openai", gmail_token_file=token, gmail_api_url=gmail.url,
        support_email="support@example.com", company_name="Northwind Bank", pii_redaction=redaction,
        taxonomy_path=ROOT / "prompts" / "taxonomy-banking.yaml",
    )
    deps = build_deps(settings, pool)
    assert deps.embedder is not None
    articles = [a for path, root in collect([ROOT / "samples" / "kb"]) for a in read_file(path, root)]
    await ingest(pool, articles, deps.embedder)
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [
            ("Where is my new card? Ordered two weeks ago.", "card_delivery", "card_arrival", None),
            (f"My card has not come yet, email me at {OTHER_EMAIL}", "card_delivery", "card_arrival", None),
        ], source="import")
    await embed_missing(pool, deps.embedder)

    outcome = await intake_email(pool, _email(), own_addresses={"support@example.com"})
    claude.script(claude.tool_use(TOOL_NAME, answer(category="card_delivery", subcategory="card_arrival",
                                                    priority="medium", sentiment="neutral", confidence=0.95)),
                  drafted)
    handlers = job_handlers(deps)
    done: set[int] = set()
    # The worker's loop, in order: triage, draft and send jobs as they are queued.
    for _ in range(10):
        rows = await pool.fetch("SELECT id, entrypoint, payload FROM pgqueuer ORDER BY id")
        todo = [r for r in rows if r["id"] not in done and r["entrypoint"] in (JobName.TRIAGE, JobName.DRAFT,
                                                                                   JobName.SEND_REPLY)]
        if not todo:
            break
        for row in todo:
            done.add(row["id"])
            await handlers[row["entrypoint"]](bytes(row["payload"]))
    return outcome.case_id


def _bodies(*fakes) -> list[str]:
    return [r.body.decode() for fake in fakes for r in fake.requests if r.body]


async def test_no_planted_value_reaches_a_provider_and_the_reply_has_them_back(pool, make_settings, providers):
    assert luhn_ok(CARD.replace(" ", ""))
    claude, openai, gmail, _ = providers
    case_id = await _run_flow(pool, make_settings, providers, redaction=True)

    messages = [r.body.decode() for r in claude.requests_to("/v1/messages")]
    embeddings = [r.body.decode() for r in openai.requests_to("/v1/embeddings")]
    assert len(messages) == 2, "one triage call and one draft call"
    assert embeddings, "articles, examples, the triage few-shot search and the KB search were embedded"
    for body in _bodies(claude, openai):
        for value in PLANTED:
            assert value not in body
    # Replaced by typed placeholders, not dropped: the model still knows what the customer gave.
    for placeholder in ("[CARD_1]", "[IBAN_1]", "[PHONE_1]", "[EMAIL_1]", "[ID_1]", "[SECRET_1]"):
        assert all(placeholder in body for body in messages)
    assert any("[EMAIL_1]" in body and "has not come yet" in body for body in embeddings), "the few-shot example"

    (sent,) = gmail.sent
    text = sent.message.get_content()
    assert sent.message["To"] == EMAIL
    assert f"we will call you on {PHONE} as soon as yours ships" in text
    assert PLACEHOLDER.search(text) is None

    async with pool.acquire() as conn:
        stored = await pii_maps.load(conn, case_id)
    assert stored == {"[CARD_1]": CARD, "[IBAN_1]": IBAN, "[PHONE_1]": PHONE, "[EMAIL_1]": EMAIL, "[ID_1]": SSN,
                      "[SECRET_1]": PASSWORD}
    # The draft is stored as written, with placeholders: the values live in the map alone.
    draft = await pool.fetchval("SELECT body FROM case_drafts WHERE case_id = $1", case_id)
    assert "[PHONE_1]" in draft and PHONE not in draft


async def test_with_redaction_off_the_values_reach_both_providers(pool, make_settings, providers):
    claude, openai, gmail, _ = providers
    case_id = await _run_flow(pool, make_settings, providers, redaction=False)
    messages = "".join(r.body.decode() for r in claude.requests_to("/v1/messages"))
    embeddings = "".join(r.body.decode() for r in openai.requests_to("/v1/embeddings"))
    for value in (CARD, IBAN, PHONE, EMAIL, SSN, PASSWORD):
        assert value in messages and value in embeddings
    assert OTHER_EMAIL in messages
    async with pool.acquire() as conn:
        assert await pii_maps.load(conn, case_id) == {}
    (sent,) = gmail.sent
    assert "we will call you on the number you gave us" in sent.message.get_content()


async def test_a_placeholder_the_case_cannot_fill_goes_to_review_and_stays_visible(pool, make_settings, providers):
    gmail = providers[2]

    def copies_another_customers(body: dict) -> dict:
        drafted = _draft(body)
        drafted["input"]["reply"] += "\nWe have also checked [CARD_1] and [CARD_7]."
        return drafted

    case_id = await _run_flow(pool, make_settings, providers, redaction=True, drafted=copies_another_customers)
    assert gmail.sent == []
    reason = await pool.fetchval("SELECT decision_reason FROM case_drafts WHERE case_id = $1", case_id)
    assert reason == "the draft holds a placeholder the case's values cannot fill: [CARD_7]"
    facts = await review.card_facts(pool, case_id)
    assert facts is not None and facts.draft is not None
    assert f"We have also checked {CARD} and [CARD_7]." in facts.draft, "filled from the map; never guessed"


def test_an_unresolved_placeholder_alone_sends_the_draft_to_review():
    item = PolicyInput(triage_confidence=0.95, draft_confidence=0.92, category="card_delivery", category_auto_send=True,
                       tier="standard", valid_citations=1, drafter="claude", unresolved=("[EMAIL_3]",))
    assert decide(replace(item, unresolved=()), high=0.85, always_review_tiers=frozenset()).auto_send
    decision = decide(item, high=0.85, always_review_tiers=frozenset())
    assert not decision.auto_send
    assert decision.reason == "the draft holds a placeholder the case's values cannot fill: [EMAIL_3]"


async def test_an_incident_summary_request_carries_no_planted_value(pool, make_settings):
    incident = await insert_incident(pool, [
        IncidentCase("Refund failed", f"My refund to {IBAN} failed, call {PHONE}.", "standard"),
        IncidentCase(f"Card {CARD} declined", f"Refunds error for me too ({EMAIL}).", "enterprise"),
    ])
    async with FakeAnthropic() as claude:
        settings = make_settings(anthropic_api_key="test-key", anthropic_base_url=claude.url)
        claude.script(claude.tool_use(TOOL_NAME, {
            "summary": "Refunds fail.", "root_cause_hypothesis": "The refund API rejects requests.",
            "customer_impact": "No refunds.", "recommended_actions": [], "severity_suggestion": "high",
            "confidence": 0.6}))
        await job_handlers(Deps(settings, pool, Metrics()))[JobName.ALERT_SUMMARY](
            json.dumps({"alert_id": str(incident.alert_id)}).encode())
        (request,) = [r.body.decode() for r in claude.requests_to("/v1/messages")]
    for value in (IBAN, PHONE, CARD, EMAIL):
        assert value not in request
    assert "My refund to [IBAN_1] failed, call [PHONE_1]." in request and "Card [CARD_1] declined" in request
