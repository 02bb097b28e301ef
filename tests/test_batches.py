"""Message Batches for bulk work, through the real SDK against the fake Anthropic (which implements the
batch endpoints): the day's article drafts and warning-level incident summaries wait in one batch, its
results are matched by custom_id and billed at half price once; a batch that never ends is canceled at
BATCH_TIMEOUT_MINUTES and its calls made directly; only failed requests go out again; a pass that died
mid-batch is picked up from batch_jobs without paying twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from anthropic import AsyncAnthropic
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from db import usage as usage_db
from pipelines.adapters.anthropic_batches import AnthropicBatches
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.batching.run import BatchPass, claim_batch, run_batches
from pipelines.jobs import JobName
from pipelines.learning.kb_gaps import kb_gaps_step
from pipelines.ports import LLMRequest
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import Status
from tests.fakes.slack import FakeSlack
from tests.support.cases import import_demo_kb, jobs_queued
from tests.support.incidents import IncidentCase, insert_incident
from tests.support.jobs import run_jobs
from tests.support.kb_gaps import CRYPTO, MORTGAGE, NOW, PENSION, add_group

METRICS = "C0METRICS"
TIMEOUT = timedelta(minutes=30)
TOPICS = ("crypto", "mortgage", "pension")
CREATE = "/v1/messages/batches"


def article(body: dict[str, Any]) -> dict[str, Any]:
    """An article about the gap the request is about, so a result applied to the wrong gap shows."""
    user = body["messages"][0]["content"]
    (topic,) = [t for t in TOPICS if t in user.lower()]
    return FakeAnthropic.tool_use(TOOL_NAME, {
        "title": f"All about {topic}", "summary": None, "tags": [topic],
        "body": f"We do not offer {topic} products yet.\n\n1. Read our page.\n2. Ask us anything."})


SUMMARY = FakeAnthropic.tool_use(TOOL_NAME, {
    "summary": "Refunds fail for many customers.", "root_cause_hypothesis": "The refund service rejects requests.",
    "customer_impact": "No refunds.", "recommended_actions": ["Check the refund service"],
    "severity_suggestion": "warning", "confidence": 0.6})


@pytest.fixture
async def fake():
    async with FakeAnthropic(default=article) as server:
        yield server


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def deps(pool, fake: FakeAnthropic, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, anthropic_api_key="test-key", anthropic_base_url=fake.url,
                        anthropic_max_retries=0, slack_bot_token="xoxb-test", slack_metrics_channel=METRICS,
                        batch_timeout_minutes=int(TIMEOUT.total_seconds() // 60))
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics()), client)


async def three_gaps(pool) -> dict[str, UUID]:
    """Three KB gaps (crypto, mortgage, pension), each with its KB_DRAFT job queued, by topic."""
    await import_demo_kb(pool)
    for texts, category, sub in ((CRYPTO, "crypto", "buy_crypto"), (MORTGAGE, "lending", "mortgage"),
                                 (PENSION, "savings", "pension")):
        await add_group(pool, texts, category, sub)
    gaps = await kb_gaps_step(pool, None, until=NOW, min_cases=3, max_score=None, drafts_per_day=3)
    assert len(gaps) == 3
    rows = await pool.fetch("SELECT opportunity_id, case_ids FROM improvement_opportunities")
    by_topic = {}
    for row in rows:
        texts = (await pool.fetchval("SELECT string_agg(description, ' ') FROM cases WHERE case_id = ANY($1)",
                                     row["case_ids"])).lower()
        (topic,) = [t for t in TOPICS if t in texts]
        by_topic[topic] = row["opportunity_id"]
    return by_topic


async def batch_pass(deps: Deps, fake: FakeAnthropic, now: datetime) -> BatchPass:
    """One BATCHES pass at `now`, on a client of its own (as a worker process has)."""
    async with AsyncAnthropic(api_key="test-key", base_url=fake.url, max_retries=0) as client:
        return await run_batches(deps.pool, AnthropicBatches(client), now=now, timeout=TIMEOUT)


def custom_ids(request) -> list[str]:
    return [r["custom_id"] for r in request.json["requests"]]


async def drafts(pool) -> dict[UUID, tuple[str, str]]:
    rows = await pool.fetch("SELECT opportunity_id, drafter, title FROM article_drafts")
    return {r["opportunity_id"]: (r["drafter"], r["title"]) for r in rows}


async def usage_rows(pool, step: str = "kb_article") -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM llm_usage WHERE step = $1 ORDER BY created_at", step)
    return [dict(r) for r in rows]


async def test_the_days_article_drafts_go_as_one_batch_at_half_price_and_post_their_cards(deps, fake, slack):
    gaps = await three_gaps(deps.pool)
    fake.batch_polls_to_end = 1
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3
    assert fake.requests_to("/v1/messages") == [] and await drafts(deps.pool) == {}
    queued = await deps.pool.fetch("SELECT request_id, subject_id, status FROM batch_requests")
    assert {r["subject_id"] for r in queued} == set(gaps.values()) and {r["status"] for r in queued} == {"queued"}

    # A redelivered job queues nothing twice.
    for opportunity_id in gaps.values():
        await job_handlers(deps)[JobName.KB_DRAFT](json.dumps({"opportunity_id": str(opportunity_id)}).encode())
    assert await deps.pool.fetchval("SELECT count(*) FROM batch_requests") == 3

    run = job_handlers(deps)[JobName.BATCHES]
    await run(b"{}")  # sends one batch
    (create,) = fake.requests_to(CREATE, "POST")
    assert sorted(custom_ids(create)) == sorted(r["request_id"].hex for r in queued)
    params = create.json["requests"][0]["params"]
    assert params["tool_choice"] == {"type": "tool", "name": TOOL_NAME} and params["model"] == "claude-sonnet-4-6"
    await run(b"{}")  # still in progress
    assert await jobs_queued(deps.pool) == []
    await run(b"{}")  # ended: each answer runs its gap's draft job again
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3

    assert await drafts(deps.pool) == {gaps[t]: ("claude", f"All about {t}") for t in TOPICS}  # by custom_id
    posted = [m for m in slack.messages if m["channel"] == METRICS]
    assert len(posted) == 3
    assert fake.requests_to("/v1/messages") == [] and len(fake.requests_to(CREATE, "POST")) == 1

    batch = await deps.pool.fetchrow("SELECT * FROM batch_jobs")
    assert (batch["status"], batch["request_count"], batch["succeeded_count"], batch["failed_count"]) == (
        "completed", 3, 3, 0)
    assert batch["completed_at"] is not None and batch["batch_id"].startswith("msgbatch_")
    rows = await usage_rows(deps.pool)
    assert len(rows) == 3 and {r["batch_job_id"] for r in rows} == {batch["batch_job_id"]}
    assert all(r["success"] and r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
    # Half what the same tokens cost in a direct call.
    row = rows[0]
    await usage_db.record_calls(deps.pool, [usage_db.Call(
        step="direct_price", provider="anthropic", model=row["model"], input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"], cached_tokens=row["cached_tokens"],
        cache_write_tokens=row["cache_write_tokens"], latency_ms=0, success=True, error=None, prompt_version=None)])
    direct = await deps.pool.fetchval("SELECT cost_usd FROM llm_usage WHERE step = 'direct_price'")
    assert direct > 0 and row["cost_usd"] == pytest.approx(direct / 2, abs=Decimal("0.000001"))

    await run(b"{}")  # nothing waits: no batch, no job
    assert len(fake.requests_to(CREATE, "POST")) == 1 and await jobs_queued(deps.pool) == []


async def test_a_batch_that_never_ends_is_canceled_at_the_timeout_and_its_calls_made_directly(deps, fake):
    gaps = await three_gaps(deps.pool)
    fake.batch_polls_to_end = None
    await run_jobs(deps, JobName.KB_DRAFT)
    start = datetime.now(UTC)
    assert (await batch_pass(deps, fake, start)).sent == 3
    waited = await batch_pass(deps, fake, start + TIMEOUT - timedelta(seconds=1))
    assert waited.timed_out_batches == 0 and await jobs_queued(deps.pool) == []

    late = await batch_pass(deps, fake, start + TIMEOUT + timedelta(seconds=1))
    assert (late.timed_out_batches, late.direct) == (1, 3)
    (batch_id,) = fake.batches
    assert len(fake.requests_to(f"{CREATE}/{batch_id}/cancel", "POST")) == 1
    assert sorted(p["opportunity_id"] for _, p in await jobs_queued(deps.pool)) == sorted(map(str, gaps.values()))
    assert all(p["sync"] for _, p in await jobs_queued(deps.pool))
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3
    assert len(fake.requests_to("/v1/messages")) == 3
    assert await drafts(deps.pool) == {gaps[t]: ("claude", f"All about {t}") for t in TOPICS}

    # The canceled batch ends later: read once, nothing applied or billed twice, no job queued.
    await batch_pass(deps, fake, start + TIMEOUT + timedelta(minutes=1))
    batch = await deps.pool.fetchrow("SELECT status, completed_at, result_payload FROM batch_jobs")
    assert batch["status"] == "timed_out" and batch["completed_at"] is not None
    assert json.loads(batch["result_payload"]) == {"canceled": 3}
    assert await jobs_queued(deps.pool) == []
    rows = await usage_rows(deps.pool)
    assert len(rows) == 3 and all(r["batch_job_id"] is None for r in rows)
    assert len(fake.requests_to(CREATE, "POST")) == 1


async def test_only_the_failed_requests_go_out_again_and_a_hopeless_one_is_made_directly(deps, fake):
    gaps = await three_gaps(deps.pool)
    await run_jobs(deps, JobName.KB_DRAFT)
    order = [r["subject_id"] for r in await deps.pool.fetch("SELECT subject_id FROM batch_requests ORDER BY created_at")]
    # Answered in request order: the second is overloaded (worth another batch), the third invalid (never).
    fake.script(article, Status(529), Status(400, message="prompt is too long"))
    now = datetime.now(UTC)
    await batch_pass(deps, fake, now)
    done = await batch_pass(deps, fake, now + timedelta(minutes=1))
    assert (done.answered, done.retried, done.direct, done.sent) == (1, 1, 1, 1)
    first, second = fake.requests_to(CREATE, "POST")
    overloaded = await deps.pool.fetchval("SELECT request_id FROM batch_requests WHERE subject_id = $1", order[1])
    assert custom_ids(second) == [overloaded.hex] and overloaded.hex in custom_ids(first)

    await batch_pass(deps, fake, now + timedelta(minutes=2))
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3  # two answers, and the invalid one made directly
    assert len(fake.requests_to("/v1/messages")) == 1
    assert {v[0] for v in (await drafts(deps.pool)).values()} == {"claude"} and len(await drafts(deps.pool)) == 3
    states = {r["subject_id"]: (r["status"], r["attempts"]) for r in await deps.pool.fetch(
        "SELECT subject_id, status, attempts FROM batch_requests")}
    assert states == {order[0]: ("answered", 1), order[1]: ("answered", 2), order[2]: ("synchronous", 1)}
    rows = await usage_rows(deps.pool)
    assert sum(r["batch_job_id"] is not None for r in rows) == 2 and len(rows) == 3  # errored results bill nothing
    assert set(gaps.values()) == set(await drafts(deps.pool))


async def test_a_pass_that_died_after_the_provider_created_the_batch_is_picked_up_not_sent_again(deps, fake):
    await three_gaps(deps.pool)
    await run_jobs(deps, JobName.KB_DRAFT)
    now = datetime.now(UTC)
    # The dead pass: its row written and the batch created at the provider, the provider's id never stored.
    batch_job_id, calls = await claim_batch(deps.pool, now=now, timeout=TIMEOUT)
    async with AsyncAnthropic(api_key="test-key", base_url=fake.url, max_retries=0) as client:
        await AnthropicBatches(client).submit([(c.request_id.hex, LLMRequest.model_validate_json(c.request))
                                               for c in calls])
    assert await deps.pool.fetchval("SELECT batch_id FROM batch_jobs") is None

    # After the restart: the batch is found at the provider, read, and nothing is sent twice.
    found = await batch_pass(deps, fake, now + timedelta(minutes=1))
    assert (found.recovered_batches, found.sent) == (1, 0)
    await batch_pass(deps, fake, now + timedelta(minutes=2))
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3
    assert len(fake.requests_to(CREATE, "POST")) == 1 and fake.requests_to("/v1/messages") == []
    assert len(await drafts(deps.pool)) == 3 and len(await usage_rows(deps.pool)) == 3
    (batch_id,) = fake.batches
    assert await deps.pool.fetchval("SELECT batch_id FROM batch_jobs WHERE batch_job_id = $1", batch_job_id) == batch_id


async def test_a_pass_that_died_before_the_provider_had_the_batch_sends_its_calls_once(deps, fake):
    await three_gaps(deps.pool)
    await run_jobs(deps, JobName.KB_DRAFT)
    now = datetime.now(UTC)
    await claim_batch(deps.pool, now=now, timeout=TIMEOUT)  # and died before the create

    again = await batch_pass(deps, fake, now + timedelta(minutes=1))
    assert (again.recovered_batches, again.retried, again.sent) == (0, 3, 3)
    assert len(fake.requests_to(CREATE, "POST")) == 1
    statuses = [r["status"] for r in await deps.pool.fetch("SELECT status FROM batch_jobs ORDER BY submitted_at")]
    assert sorted(statuses) == ["failed", "in_progress"]
    await batch_pass(deps, fake, now + timedelta(minutes=2))
    assert await run_jobs(deps, JobName.KB_DRAFT) == 3
    assert len(await drafts(deps.pool)) == 3 and len(await usage_rows(deps.pool)) == 3


async def test_a_warning_alerts_summary_waits_for_a_batch_and_an_urgent_one_does_not(deps, fake):
    fake.default = SUMMARY
    cases = [IncidentCase("Refund failed", "The refund button errors.", "standard")]
    warning = await insert_incident(deps.pool, cases, severity="warning", fingerprint="warn")
    high = await insert_incident(deps.pool, cases, severity="high", fingerprint="high", title="Refunds down")
    summarise = job_handlers(deps)[JobName.ALERT_SUMMARY]
    for alert in (warning, high):
        await summarise(json.dumps({"alert_id": str(alert.alert_id)}).encode())
    (direct,) = fake.requests_to("/v1/messages")
    assert "Refunds down" in json.dumps(direct.json)
    sources = dict(await deps.pool.fetch("SELECT alert_id, summary_source FROM proactive_alerts"))
    assert sources == {high.alert_id: "claude", warning.alert_id: "template"}
    runs = await deps.pool.fetch("SELECT status, metadata FROM workflow_executions "
                                 "WHERE workflow_name = 'incident_summary' ORDER BY started_at")
    assert [(r["status"], json.loads(r["metadata"]).get("deferred")) for r in runs] == [
        ("skipped", "message batch"), ("success", None)]

    now = datetime.now(UTC)
    await batch_pass(deps, fake, now)
    await batch_pass(deps, fake, now + timedelta(minutes=1))
    (job,) = [p for n, p in await jobs_queued(deps.pool) if n == JobName.ALERT_SUMMARY]
    assert job["alert_id"] == str(warning.alert_id) and job["answer"] is not None
    await run_jobs(deps, JobName.ALERT_SUMMARY)
    row = await deps.pool.fetchrow("SELECT description, summary_source FROM proactive_alerts WHERE alert_id = $1",
                                   warning.alert_id)
    assert tuple(row) == ("Refunds fail for many customers.", "claude")
    rows = await usage_rows(deps.pool, "incident_summary")
    assert len(rows) == 2 and sum(r["batch_job_id"] is not None for r in rows) == 1
    assert len(fake.requests_to("/v1/messages")) == 1
