"""The triage step end to end: a stored case, the cascade (local then Claude through the real SDK
against the fake Anthropic API), the route, and what is written."""

from __future__ import annotations

import json

import pytest

from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.triage.step import triage_case
from pipelines.triage.triagers import CascadeTriager
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import new_case
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal, answer, claude_for


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
