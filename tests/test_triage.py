"""The triage step end to end: a stored case, the cascade (local then Claude through the real SDK
against the fake Anthropic API), the route, and what is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic

from pipelines.adapters.anthropic_llm import TOOL_NAME, AnthropicLLM
from pipelines.intake.webhook import intake_webhook
from pipelines.models import IntakeRequest, TriageResult
from pipelines.triage.routing import Thresholds
from pipelines.taxonomy import load_taxonomy
from pipelines.triage.step import triage_case
from pipelines.ports import Triaged, TriageInput
from pipelines.triage.triagers import CascadeTriager, ClaudeTriager
from prompts import load
from tests.fakes.anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent
TAXONOMY = load_taxonomy(ROOT / "prompts" / "taxonomy-banking.yaml")
THRESHOLDS = Thresholds(high=0.85, medium=0.60)


class ScriptedLocal:
    """An in-repo stand-in for the local triager: always the same answer."""

    name = "local"

    def __init__(self, confidence: float, label: str = "card_arrival", priority="medium", sentiment="neutral") -> None:
        self.confidence, self.label, self.calls = confidence, label, 0
        self.priority, self.sentiment = priority, sentiment

    async def triage(self, item: TriageInput) -> Triaged:
        self.calls += 1
        category, sub = TAXONOMY.resolve(self.label)
        return Triaged(TriageResult(category=category, subcategory=sub, priority=self.priority,
                                    sentiment=self.sentiment, confidence=self.confidence,
                                    reason="nearest examples agree", triager="local", model="test-local"))


def claude_for(fake: FakeAnthropic, *, timeout: float = 5.0) -> ClaudeTriager:
    client = AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=1, timeout=timeout)
    return ClaudeTriager(AnthropicLLM(client), TAXONOMY, model="claude-haiku-4-5",
                         system=load("triage"), request=load("triage_request"))


def answer(**overrides) -> dict:
    base = {"category": "transfers", "subcategory": "transfer_not_received_by_recipient", "priority": "high",
            "sentiment": "negative", "language": "en", "summary": "Salary transfer missing", "error_codes": [],
            "confidence": 0.93, "reason": "The customer says the recipient never got the money."}
    return {**base, **overrides}


async def new_case(pool, text="My transfer to my landlord has not arrived and I am furious.", **extra):
    request = IntakeRequest(customer_email="eve@example.com", description=text, **extra)
    return (await intake_webhook(pool, request, replay_key="k-" + text[:20])).case_id


async def test_a_confident_local_answer_never_calls_claude(pool):
    async with FakeAnthropic() as fake:
        local = ScriptedLocal(0.97)
        cascade = CascadeTriager(local, claude_for(fake), high=0.85)
        case_id = await new_case(pool)
        outcome = await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, case_id)
        assert fake.requests_to("/v1/messages") == []
    assert outcome.result.triager == "local" and outcome.decision.route == "self_service"
    async with pool.acquire() as conn:
        case = await conn.fetchrow("SELECT status, category, subcategory, confidence_score FROM cases WHERE case_id = $1", case_id)
        jobs = [r["entrypoint"] for r in await conn.fetch("SELECT entrypoint FROM pgqueuer ORDER BY id")]
    assert (case["status"], case["category"], case["subcategory"]) == ("drafting", "card_delivery", "card_arrival")
    assert float(case["confidence_score"]) == pytest.approx(0.97)
    # The intake's triage job is still queued (no worker runs here); triage added the draft job.
    assert jobs == ["case.triage", "case.draft"]


async def test_below_high_claude_decides_and_its_usage_is_priced(pool):
    async with FakeAnthropic() as fake:
        fake.script(fake.tool_use(TOOL_NAME, answer()))
        cascade = CascadeTriager(ScriptedLocal(0.55), claude_for(fake), high=0.85)
        case_id = await new_case(pool)
        outcome = await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, case_id)
        request = fake.requests_to("/v1/messages")[0].json
    assert outcome.result.triager == "claude"
    assert (outcome.result.category, outcome.result.subcategory) == ("transfers", "transfer_not_received_by_recipient")
    assert request["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    schema = request["tools"][0]["input_schema"]
    assert "security" in schema["properties"]["category"]["enum"]
    assert "<customer_message>" in request["messages"][0]["content"]
    async with pool.acquire() as conn:
        usage = await conn.fetchrow("SELECT step, model, input_tokens, cost_usd, success FROM llm_usage")
        execution = await conn.fetchrow("SELECT status, duration_ms, metadata FROM workflow_executions")
    assert usage["step"] == "triage" and usage["success"] and usage["input_tokens"] > 0
    assert usage["cost_usd"] > 0, "claude-haiku-4-5 is priced by its prefix"
    assert execution["status"] == "success" and execution["duration_ms"] >= 0
    assert json.loads(execution["metadata"])["route"] == "self_service"


async def test_claude_529_then_timeout_keeps_the_local_answer_capped(pool):
    async with FakeAnthropic() as fake:
        fake.script(fake.status(529), fake.hang(5))
        cascade = CascadeTriager(ScriptedLocal(0.80), claude_for(fake, timeout=0.5), high=0.85)
        case_id = await new_case(pool)
        outcome = await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, case_id)
        assert len(fake.requests_to("/v1/messages")) == 2, "the SDK retried the 529 once, then timed out"
    assert outcome.result.triager == "local"
    assert outcome.result.confidence < 0.85 and "Claude failed" in outcome.result.reason
    assert outcome.decision.route == "review"
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        failures = await conn.fetchval("SELECT count(*) FROM llm_usage WHERE NOT success")
    assert status == "drafting" and failures == 1


async def test_a_label_outside_the_taxonomy_is_never_stored(pool):
    async with FakeAnthropic() as fake:
        fake.script(fake.tool_use(TOOL_NAME, answer(category="transfers", subcategory="card_arrival")))
        cascade = CascadeTriager(ScriptedLocal(0.5), claude_for(fake), high=0.85)
        case_id = await new_case(pool)
        outcome = await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, case_id)
    assert outcome.result.triager == "local", "the invalid Claude answer was rejected"
    async with pool.acquire() as conn:
        sub = await conn.fetchval("SELECT subcategory FROM cases WHERE case_id = $1", case_id)
    assert sub == "card_arrival"


async def test_critical_and_unhappy_vip_go_to_a_person_at_once(pool):
    critical = await new_case(pool, text="Someone emptied my account!")
    outcome = await triage_case(pool, ScriptedLocal(0.99, priority="critical"), TAXONOMY, THRESHOLDS, critical)
    assert outcome.decision.route == "human_urgent" and outcome.status == "human_owned"
    async with pool.acquire() as conn:
        jobs = {r["entrypoint"] for r in await conn.fetch("SELECT entrypoint FROM pgqueuer")}
        await conn.execute("UPDATE customers SET account_tier = 'enterprise'")
    assert {"case.urgent_alert", "case.review_card"} <= jobs

    unhappy = await new_case(pool, text="Third time I write about this card. Useless.")
    outcome = await triage_case(pool, ScriptedLocal(0.99, sentiment="negative"), TAXONOMY, THRESHOLDS, unhappy)
    assert outcome.decision.route == "human_urgent" and "enterprise customer" in outcome.decision.reason


async def test_a_retried_triage_job_does_nothing_the_second_time(pool):
    local = ScriptedLocal(0.9)
    case_id = await new_case(pool)
    assert await triage_case(pool, local, TAXONOMY, THRESHOLDS, case_id) is not None
    assert await triage_case(pool, local, TAXONOMY, THRESHOLDS, case_id) is None
    assert local.calls == 1
