from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from bot.deps import Deps
from bot.runtime.metrics import Metrics
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from db import jobs


async def client_for(pool, make_settings, **status) -> TestClient:
    deps = Deps(make_settings(), pool, Metrics())
    app = build_web_app(deps, RuntimeStatus(roles=["web"], **status))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_healthz_reports_the_database_and_queue_depth(pool, make_settings):
    async with pool.acquire() as conn:
        await jobs.enqueue(conn, "demo.job", b"{}")
        await jobs.enqueue(conn, "demo.job", b"{}")
    client = await client_for(pool, make_settings, slack_connected=lambda: True)
    try:
        response = await client.get("/healthz")
        body = await response.json()
    finally:
        await client.close()
    assert response.status == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["database"]["pgvector"]
    assert body["queue"] == {"queued": 2, "picked": 0, "failed": 0}
    assert body["slack"] == {"connected": True}


async def test_healthz_is_503_when_the_database_is_gone(pool, make_settings):
    client = await client_for(pool, make_settings)
    await pool.close()
    try:
        response = await client.get("/healthz")
        body = await response.json()
    finally:
        await client.close()
    assert response.status == 503
    assert body["status"] == "error" and body["database"]["ok"] is False


async def test_metrics_are_prometheus_text(pool, make_settings):
    async with pool.acquire() as conn:
        await jobs.enqueue(conn, "demo.job", b"{}")
    client = await client_for(pool, make_settings)
    try:
        await client.get("/healthz")
        response = await client.get("/metrics")
        text = await response.text()
    finally:
        await client.close()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'cx_queue_jobs{status="queued"} 1.0' in text
    assert 'cx_http_requests_total{route="/healthz",status="200"} 1.0' in text


async def test_unknown_routes_answer_json_errors(pool, make_settings):
    client = await client_for(pool, make_settings)
    try:
        response = await client.get("/nope")
        body = await response.json()
    finally:
        await client.close()
    assert response.status == 404
    assert body["error"]["code"] == "not_found"
