"""A fresh install, as a new user has it: no labelled history, so no local model. Triage must still
work: Claude alone when there is a key, a person otherwise; and the health reports must say so."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from bot.ai import build_triager
from bot.cli.health import run_checks
from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from db import examples as examples_db
from db.pool import transaction
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.review.decisions import card_facts
from pipelines.triage.local.triager import train_local
from pipelines.triage.step import triage_case
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import new_case
from tests.support.triage import TAXONOMY, THRESHOLDS, answer


async def test_with_no_local_model_claude_triages_alone(pool, make_settings):
    async with FakeAnthropic() as fake:
        fake.script(fake.tool_use(TOOL_NAME, answer(confidence=0.93)))
        settings = make_settings(anthropic_api_key="test-key", anthropic_base_url=fake.url)
        triager = build_triager(settings, pool, TAXONOMY, None)  # the product's cascade, as `cx run` builds it
        case_id = await new_case(pool)
        outcome = await triage_case(pool, triager, TAXONOMY, THRESHOLDS, case_id)
        assert len(fake.requests_to("/v1/messages")) == 1
    assert outcome is not None and outcome.result is not None
    assert outcome.result.triager == "claude" and outcome.decision.route == "self_service"
    status = await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
    assert status == "drafting"


async def test_with_neither_the_case_goes_to_a_person_with_the_reason_and_gets_its_card(pool, make_settings):
    deps = Deps(make_settings(), pool, Metrics(), taxonomy=TAXONOMY,
                triager=build_triager(make_settings(), pool, TAXONOMY, None))
    case_id = await new_case(pool)
    payload = await pool.fetchval("SELECT payload FROM pgqueuer WHERE entrypoint = 'case.triage'")
    await job_handlers(deps)["case.triage"](bytes(payload))  # the worker's job: it must not fail
    case = await pool.fetchrow("SELECT status, category, triage_reason, metadata->>'route' AS route FROM cases "
                               "WHERE case_id = $1", case_id)
    assert (case["status"], case["category"], case["route"]) == ("human_owned", None, "human")
    assert case["triage_reason"].startswith("no triage model yet")
    assert "cx cases import" in case["triage_reason"] and "ANTHROPIC_API_KEY" in case["triage_reason"]
    jobs = [r["entrypoint"] for r in await pool.fetch("SELECT entrypoint FROM pgqueuer ORDER BY id")]
    assert "case.review_card" in jobs
    move = await pool.fetchrow("SELECT from_status, to_status, actor_id FROM case_interactions "
                               "WHERE case_id = $1 AND interaction_type = 'status_change'", case_id)
    assert tuple(move) == ("new", "human_owned", "router")
    execution = await pool.fetchrow("SELECT status FROM workflow_executions WHERE case_id = $1", case_id)
    assert execution["status"] == "success"
    facts = await card_facts(pool, case_id)
    assert facts is not None and facts.triage_reason == case["triage_reason"]  # the card says why


async def test_health_check_says_triage_has_no_model_until_it_has_one(pool, make_settings):
    fresh = {c.name: c for c in await run_checks(make_settings())}["triage"]
    assert (fresh.configured, fresh.ok) == (False, None)
    assert fresh.detail.startswith("no triage model yet: every case goes to a person")

    with_key = {c.name: c for c in await run_checks(make_settings(anthropic_api_key="k"))}["triage"]
    assert (with_key.configured, with_key.ok) == (True, True) and "Claude triages every case" in with_key.detail

    history = [(f"my card has not arrived yet {i}", "card_delivery", "card_arrival", None) for i in range(4)]
    history += [(f"how do I top up by bank transfer {i}", "top_up", "top_up_by_bank_transfer_charge", None)
                for i in range(4)]
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, history, source="import")
    await train_local(pool, None)
    trained = {c.name: c for c in await run_checks(make_settings())}["triage"]
    assert (trained.configured, trained.ok) == (True, True)
    assert trained.detail.startswith("local model tfidf-svm (8 examples")


async def test_healthz_says_triage_has_no_model(pool, make_settings):
    app = build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"]))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/healthz")
        body = await response.json()
    assert response.status == 200 and body["status"] == "ok"
    assert body["triage"]["ready"] is False and body["triage"]["local_model"] is None
    assert "no triage model yet" in body["triage"]["detail"]
