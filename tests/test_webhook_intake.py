from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.deps import Deps
from bot.runtime.metrics import Metrics
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from bot.web.webhooks import WAKEUP
from pipelines.signatures import sign, signed_headers

SECRET = "test-webhook-secret"
GOOD = {
    "customer_email": "Ann.Lee@Example.com",
    "customer_name": "Ann Lee",
    "subject": "Card not arrived",
    "description": "I ordered my card two weeks ago and it has not arrived.",
    "severity": "medium",
    "external_id": "form-1001",
    "callback_url": "https://forms.example.com/callback",
    "metadata": {"source": "web_form"},
}


@pytest.fixture
async def client(pool, make_settings):
    app = build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"]))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def post(client, body: bytes, headers=None, content_type="application/json"):
    h = {"Content-Type": content_type, **(headers if headers is not None else signed_headers(SECRET, body))}
    return await client.post("/webhooks/intake", data=body, headers=h)


async def counts(pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        return {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("customers", "cases", "case_interactions", "pgqueuer")
        }


NOTHING = {"customers": 0, "cases": 0, "case_interactions": 0, "pgqueuer": 0}


async def test_a_good_request_commits_the_case_and_its_triage_job(client, pool):
    response = await post(client, json.dumps(GOOD).encode())
    body = await response.json()
    assert response.status == 202
    assert body["status"] == "new" and body["reference"].startswith("CX-")
    async with pool.acquire() as conn:
        case = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1::uuid", body["case_id"])
        customer = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1", case["customer_id"])
        job = await conn.fetchrow("SELECT entrypoint, dedupe_key, convert_from(payload, 'utf8') AS p FROM pgqueuer")
    assert customer["email"] == "ann.lee@example.com" and customer["name"] == "Ann Lee"
    assert case["channel"] == "webhook" and case["external_id"] == "form-1001"
    assert json.loads(case["metadata"])["callback_url"] == "https://forms.example.com/callback"
    assert job["entrypoint"] == "case.triage"
    assert json.loads(job["p"]) == {"case_id": body["case_id"]}
    assert await counts(pool) == {"customers": 1, "cases": 1, "case_interactions": 1, "pgqueuer": 1}


async def test_the_same_external_id_again_returns_the_same_case(client, pool):
    first = await (await post(client, json.dumps(GOOD).encode())).json()
    again = await post(client, json.dumps({**GOOD, "description": "second try"}).encode())
    assert again.status == 200
    assert (await again.json())["case_id"] == first["case_id"]
    assert await counts(pool) == {"customers": 1, "cases": 1, "case_interactions": 1, "pgqueuer": 1}


async def test_a_replayed_signed_request_has_no_second_effect(client, pool):
    body = json.dumps({k: v for k, v in GOOD.items() if k != "external_id"}).encode()
    headers = signed_headers(SECRET, body)
    first = await post(client, body, headers)
    second = await post(client, body, headers)
    assert first.status == 202 and second.status == 200
    assert (await first.json())["case_id"] == (await second.json())["case_id"]
    assert (await counts(pool))["cases"] == 1


@pytest.mark.parametrize(
    "make_headers, problem",
    [
        (lambda body: {}, "missing"),
        (lambda body: {"X-CX-Timestamp": str(int(time.time())), "X-CX-Signature": "sha256=" + "0" * 64}, "does not match"),
        (lambda body: {"X-CX-Timestamp": "yesterday", "X-CX-Signature": "sha256=00"}, "malformed"),
        (lambda body: signed_headers(SECRET, body, now=time.time() - 301), "outside the 5-minute window"),
        (lambda body: signed_headers("another-secret", body), "does not match"),
    ],
    ids=["missing", "wrong", "malformed", "stale", "other-secret"],
)
async def test_bad_signatures_are_401_and_write_nothing(client, pool, make_headers, problem):
    body = json.dumps(GOOD).encode()
    response = await post(client, body, make_headers(body))
    payload = await response.json()
    assert response.status == 401
    assert payload["error"]["code"] == "bad_signature" and problem in payload["error"]["message"]
    assert await counts(pool) == NOTHING


async def test_a_tampered_body_is_401(client, pool):
    body = json.dumps(GOOD).encode()
    headers = signed_headers(SECRET, body)
    tampered = body.replace(b"two weeks", b"ten weeks")
    response = await post(client, tampered, headers)
    assert response.status == 401
    assert await counts(pool) == NOTHING


async def test_an_oversized_body_is_413(client, pool):
    body = json.dumps({**GOOD, "metadata": {"blob": "x" * (1024 * 1024)}}).encode()
    response = await post(client, body)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    assert await counts(pool) == NOTHING


async def test_not_json_is_415_and_malformed_json_is_400(client, pool):
    body = b"customer_email=a@example.com"
    response = await post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status == 415
    broken = b'{"customer_email": "a@example.com", '
    response = await post(client, broken)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    assert await counts(pool) == NOTHING


async def test_every_invalid_field_is_reported_in_one_422(client, pool):
    bad = {
        "customer_email": "not-an-email",
        "description": "",
        "severity": "apocalyptic",
        "callback_url": "http://insecure.example.com/cb",
        "surprise": 1,
    }
    response = await post(client, json.dumps(bad).encode())
    payload = await response.json()
    assert response.status == 422
    fields = {d["field"] for d in payload["error"]["details"]}
    assert fields == {"customer_email", "description", "severity", "callback_url", "surprise"}
    assert await counts(pool) == NOTHING


async def test_webhooks_are_off_without_a_secret(pool, make_settings):
    app = build_web_app(Deps(make_settings(webhook_secret=None), pool, Metrics()), RuntimeStatus(roles=["web"]))
    async with TestClient(TestServer(app)) as client:
        body = json.dumps(GOOD).encode()
        response = await client.post("/webhooks/intake", data=body, headers={"Content-Type": "application/json"})
        assert response.status == 503
    assert await counts(pool) == NOTHING


def test_signatures_cover_timestamp_and_body():
    assert sign("s", 1, b"{}") != sign("s", 2, b"{}")
    assert sign("s", 1, b"{}") != sign("s", 1, b"{ }")
    assert sign("s", 1, b"{}").startswith("sha256=") and len(sign("s", 1, b"{}")) == 71


async def test_the_workers_hear_of_the_triage_job_after_its_commit(client, pool, dsn):
    """The intake's own transaction sends no NOTIFY (PostgreSQL would serialize the commits on it);
    one wake-up on pgqueuer's channel follows the commit, in the shape its listeners read."""
    from db import intake as intake_db

    heard: list[dict[str, object]] = []
    listener = await asyncpg.connect(dsn)
    await listener.add_listener("ch_pgqueuer", lambda *args: heard.append(json.loads(args[3])))
    try:
        async with pool.acquire() as conn:
            stored = await intake_db.create_case(
                conn, customer_email="quiet@example.com", customer_name=None, channel="webhook", subject=None,
                description="quiet", interaction_type="webhook_in", external_id="quiet-1",
                triage_entrypoint="case.triage", notify_later=True)
            assert stored.created and await conn.fetchval("SELECT count(*) FROM pgqueuer") == 1
            await listener.execute("SELECT 1")  # a round trip: any notification has arrived by now
            assert heard == []
        response = await post(client, json.dumps(GOOD).encode())
        assert response.status == 202
        await client.app[WAKEUP].idle()
        await listener.execute("SELECT 1")
        assert [(h["type"], h["table"], h["operation"]) for h in heard] == [("table_changed_event", "pgqueuer", "insert")]
    finally:
        await listener.close()


async def test_a_waiting_worker_takes_the_triage_job_at_once(client, pool, make_settings):
    """pgqueuer's worker sleeps up to 5 s between polls when the queue is empty: the wake-up after
    the commit is what makes it take the case's triage job straight away."""
    from bot.runtime.worker import Worker

    taken: asyncio.Queue[bytes] = asyncio.Queue()

    async def triage(payload: bytes) -> None:
        taken.put_nowait(payload)

    worker = Worker(pool, make_settings(), Metrics(), {"case.triage": triage})
    await worker.start()
    try:
        await asyncio.sleep(0.5)  # the worker has found the queue empty and waits for a notification
        response = await post(client, json.dumps(GOOD).encode())
        assert response.status == 202
        payload = await asyncio.wait_for(taken.get(), timeout=2.5)
        assert json.loads(payload) == {"case_id": (await response.json())["case_id"]}
    finally:
        await worker.drain(2)
