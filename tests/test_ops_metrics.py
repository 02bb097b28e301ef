"""The Prometheus metrics an on-call person reads: each one moved by the real code path it watches
(the worker, the triage job, the Slack client against the fake Slack API, the web app's scrape)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.clients import slack_client
from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.runtime.worker import Worker
from bot.settings import Settings
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from db import jobs
from tests.fakes.slack import FakeSlack
from tests.support.cases import new_case
from tests.support.triage import TAXONOMY, ScriptedLocal


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def _scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    return _samples(await response.text())


async def test_a_scrape_reads_the_oldest_waiting_job_and_the_cost_counter_from_the_database(pool, make_settings):
    async with pool.acquire() as conn:
        for n in range(2):
            await jobs.enqueue(conn, "demo.late", b"{}", dedupe_key=f"late-{n}")
        await jobs.enqueue(conn, "demo.delayed", b"{}")
        await conn.execute("UPDATE pgqueuer SET created = now() - interval '95 seconds', "
                           "execute_after = now() - interval '90 seconds' WHERE dedupe_key = 'late-0'")
        # Held back on purpose (a retry's back-off): not waiting, so no series.
        await conn.execute("UPDATE pgqueuer SET created = now() - interval '1 hour', "
                           "execute_after = now() + interval '1 minute' WHERE entrypoint = 'demo.delayed'")
        await conn.executemany(
            "INSERT INTO llm_usage (step, provider, model, cost_usd, created_at)"
            " VALUES ($1, $2, 'm', $3, now() - make_interval(days => $4))",
            [("triage", "anthropic", 0.25, 0), ("draft", "anthropic", 0.5, 400), ("draft", "anthropic", 0.1, 0),
             ("embedding", "openai", 0.001, 0), ("triage", "local", 0, 0)])
    client = TestClient(TestServer(build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"]))))
    await client.start_server()
    try:
        first = await _scrape(client)
        assert first[("cx_queue_oldest_job_age_seconds", frozenset({("job_name", "demo.late")}))] == pytest.approx(90, abs=5)
        assert not any(name == "cx_queue_oldest_job_age_seconds" and ("job_name", "demo.delayed") in labels
                       for name, labels in first)
        cost = {dict(labels)["step"] + "/" + dict(labels)["provider"]: value
                for (name, labels), value in first.items() if name == "cx_llm_cost_usd_total"}
        assert cost == {"draft/anthropic": pytest.approx(0.6), "triage/anthropic": pytest.approx(0.25),
                        "embedding/openai": pytest.approx(0.001), "triage/local": 0}

        # Retention or an erasure deletes detail; the counter must not go down. The queue empties: its series goes.
        await pool.execute("DELETE FROM llm_usage WHERE created_at < now() - interval '30 days'")
        await pool.execute("DELETE FROM pgqueuer WHERE entrypoint = 'demo.late'")
        await pool.execute("INSERT INTO llm_usage (step, provider, model, cost_usd) VALUES ('draft', 'anthropic', 'm', 0.05)")
        second = await _scrape(client)
        assert second[("cx_llm_cost_usd_total", frozenset({("step", "draft"), ("provider", "anthropic")}))] == \
            pytest.approx(0.65)
        assert await pool.fetchval("SELECT count(*) FROM llm_usage WHERE step = 'draft'") == 2
        assert await pool.fetchval("SELECT count(*) FROM llm_cost_ledger") == 0  # folded into the totals
        assert not any(name == "cx_queue_oldest_job_age_seconds" for name, _ in second)

        # Webhook requests are counted by route and status (a bad signature: 401, stored nothing).
        bad = await client.post("/webhooks/intake", data=b'{"customer_email": "a@example.com"}',
                                headers={"Content-Type": "application/json", "X-CX-Timestamp": "1",
                                         "X-CX-Signature": "sha256=00"})
        assert bad.status == 401
        third = await _scrape(client)
        assert third[("cx_http_requests_total", frozenset({("route", "/webhooks/intake"), ("status", "401")}))] == 1
        assert third[("cx_http_requests_total", frozenset({("route", "/metrics"), ("status", "200")}))] == 2
    finally:
        await client.close()


async def test_the_worker_counts_each_job_by_outcome_and_how_long_it_waited(pool, make_settings):
    ran = asyncio.Event()

    async def works(payload: bytes) -> None:
        ran.set()

    metrics = Metrics()
    async with pool.acquire() as conn:
        await jobs.enqueue(conn, "demo.works", b"{}")
        await conn.execute("UPDATE pgqueuer SET created = now() - interval '40 seconds', "
                           "execute_after = now() - interval '30 seconds'")
    worker = Worker(pool, make_settings(), metrics, {"demo.works": works})
    await worker.start()
    try:
        await asyncio.wait_for(ran.wait(), 20)
        for _ in range(100):  # the outcome is counted when the handler returns
            if _value(metrics, "cx_jobs_total", job_name="demo.works", outcome="ok"):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.drain(5)
    assert _value(metrics, "cx_jobs_total", job_name="demo.works", outcome="ok") == 1
    assert _value(metrics, "cx_job_wait_seconds_count", job_name="demo.works") == 1
    assert _value(metrics, "cx_job_wait_seconds_sum", job_name="demo.works") == pytest.approx(30, abs=5)
    assert _value(metrics, "cx_job_wait_seconds_bucket", job_name="demo.works", le="10.0") == 0
    assert _value(metrics, "cx_job_duration_seconds_count", job_name="demo.works") == 1


async def test_the_triage_job_observes_confidence_and_route(pool, make_settings):
    metrics = Metrics()
    settings = make_settings()

    async def triage(text: str, triager: ScriptedLocal) -> None:
        await new_case(pool, text)
        payload = await pool.fetchval("DELETE FROM pgqueuer WHERE entrypoint = 'case.triage' RETURNING payload")
        handler = job_handlers(Deps(settings, pool, metrics, taxonomy=TAXONOMY, triager=triager))["case.triage"]
        await handler(bytes(payload))
        await handler(bytes(payload))  # a retried job finds the case triaged: counted once

    await triage("Where is my new card? It has been two weeks.", ScriptedLocal(0.93))
    await triage("My card has still not come, what now?", ScriptedLocal(0.7))
    await triage("Card never arrived and nobody answers.", ScriptedLocal(0.3))
    assert {r: _value(metrics, "cx_triage_routes_total", route=r) for r in ("self_service", "review", "human")} == \
        {"self_service": 1, "review": 1, "human": 1}
    assert _value(metrics, "cx_triage_confidence_count", triager="local") == 3
    assert _value(metrics, "cx_triage_confidence_sum", triager="local") == pytest.approx(0.93 + 0.7 + 0.3)
    assert _value(metrics, "cx_triage_confidence_bucket", triager="local", le="0.85") == 2


async def test_slack_errors_and_retries_are_counted_by_method():
    metrics = Metrics()
    async with FakeSlack() as slack:
        settings = Settings(_env_file=None, slack_bot_token="xoxb-test", slack_api_url=slack.url + "/api/")
        client = slack_client(settings, metrics)
        assert client is not None
        slack.ratelimit_next("chat.postMessage", retry_after=0)
        await client.chat_postMessage(channel="C0REVIEW", text="hello")  # a 429, then retried and posted
        slack.fail_next("chat.update", "message_not_found")
        with pytest.raises(Exception, match="message_not_found"):
            await client.chat_update(channel="C0REVIEW", ts="1.0", text="gone")
    assert len(slack.messages) == 1
    assert _value(metrics, "cx_slack_api_requests_total", method="chat.postMessage") == 2
    assert _value(metrics, "cx_slack_api_retries_total", method="chat.postMessage", reason="ratelimited") == 1
    assert _value(metrics, "cx_slack_api_errors_total", method="chat.postMessage", error="http_429") == 1
    assert _value(metrics, "cx_slack_api_errors_total", method="chat.update", error="message_not_found") == 1
    assert _value(metrics, "cx_slack_api_retries_total", method="chat.update", reason="ratelimited") is None
