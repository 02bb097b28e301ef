"""Inbound limits on /webhooks/*: token buckets per source address and per signing key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.deps import Deps
from bot.runtime.metrics import Metrics
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from bot.web.rate_limit import RateLimiter
from bot.web.webhooks import LIMITS, WebhookLimits
from pipelines.signatures import signed_headers

SECRET = "test-webhook-secret"


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request_body(n: int) -> bytes:
    return json.dumps({"customer_email": f"c{n}@example.com", "description": f"Request {n}: card declined.",
                       "external_id": f"rl-{n}"}).encode()


def headers(body: bytes, address: str | None = None, signed: bool = True) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    h.update(signed_headers(SECRET if signed else "not-the-secret", body))
    if address is not None:
        h["X-Forwarded-For"] = address  # as one proxy writes it, for a client that sent none
    return h


Client = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client_with(pool, make_settings, clock) -> AsyncIterator[Client]:
    """A web app with the given settings whose limits run on `clock`."""
    clients: list[TestClient] = []

    async def make(**overrides: object) -> TestClient:
        settings = make_settings(**overrides)
        app = build_web_app(Deps(settings, pool, Metrics()), RuntimeStatus(roles=["web"]))
        app[LIMITS] = WebhookLimits(settings, clock=clock)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def stored_external_ids(pool) -> set[str]:
    async with pool.acquire() as conn:
        return {r["external_id"] for r in await conn.fetch("SELECT external_id FROM cases")}


async def test_the_61st_request_within_a_minute_is_429_with_retry_after_and_stores_nothing(client_with, pool, clock):
    client = await client_with()
    for n in range(60):
        body = request_body(n)
        response = await client.post("/webhooks/intake", data=body, headers=headers(body))
        assert response.status == 202, await response.text()
    clock.now += 0.9  # still within the second in which the 61st token would come
    body = request_body(60)
    refused = await client.post("/webhooks/intake", data=body, headers=headers(body))
    payload = await refused.json()
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    assert payload["error"]["code"] == "rate_limited"
    assert payload["error"]["details"] == {"limit": "address", "retry_after": 1}
    assert "nothing was stored" in payload["error"]["message"]
    stored = await stored_external_ids(pool)
    assert len(stored) == 60 and "rl-60" not in stored
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pgqueuer") == 60


async def test_another_address_is_not_held_back_by_the_first(client_with, pool, clock):
    client = await client_with(webhook_trusted_proxies=1)
    for n in range(60):  # unsigned: they spend 198.51.100.7's tokens, and not the key's
        body = request_body(n)
        response = await client.post("/webhooks/intake", data=body, headers=headers(body, "198.51.100.7", signed=False))
        assert response.status == 401
    body = request_body(100)
    first = await client.post("/webhooks/intake", data=body, headers=headers(body, "198.51.100.7"))
    assert first.status == 429
    other = await client.post("/webhooks/intake", data=body, headers=headers(body, "203.0.113.9"))
    assert other.status == 202
    assert await stored_external_ids(pool) == {"rl-100"}


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(client_with, pool, clock):
    client = await client_with(webhook_rate_per_minute=2)
    statuses = []
    for n, claimed in enumerate(["192.0.2.1", "192.0.2.2", "192.0.2.3"]):
        body = request_body(n)
        statuses.append((await client.post("/webhooks/intake", data=body, headers=headers(body, claimed))).status)
    assert statuses == [202, 202, 429]  # all three came from the test client's one peer address
    assert await stored_external_ids(pool) == {"rl-0", "rl-1"}


async def test_with_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(client_with, pool, clock):
    client = await client_with(webhook_rate_per_minute=1, webhook_trusted_proxies=1)
    body = request_body(0)
    # The client writes any left-hand entries it likes; the proxy appends the address it saw.
    spoofed = {**headers(body), "X-Forwarded-For": "192.0.2.50, 203.0.113.5"}
    assert (await client.post("/webhooks/intake", data=body, headers=spoofed)).status == 202
    body = request_body(1)
    spoofed = {**headers(body), "X-Forwarded-For": "192.0.2.51, 203.0.113.5"}
    response = await client.post("/webhooks/intake", data=body, headers=spoofed)
    assert response.status == 429
    assert (await response.json())["error"]["details"]["limit"] == "address"


async def test_the_signing_key_is_limited_across_addresses(client_with, pool, clock):
    client = await client_with(webhook_rate_per_minute=3, webhook_trusted_proxies=1)
    for n in range(5):  # forged requests from fresh addresses do not spend the key's tokens
        body = request_body(50 + n)
        assert (await client.post("/webhooks/intake", data=body,
                                  headers=headers(body, f"198.51.100.{n}", signed=False))).status == 401
    statuses = []
    for n in range(4):
        body = request_body(n)
        response = await client.post("/webhooks/intake", data=body, headers=headers(body, f"203.0.113.{n}"))
        statuses.append(response.status)
    assert statuses == [202, 202, 202, 429]
    assert (await response.json())["error"]["details"] == {"limit": "signing_key", "retry_after": 20}
    assert response.headers["Retry-After"] == "20"  # 3 a minute: a token every 20 s
    assert await stored_external_ids(pool) == {"rl-0", "rl-1", "rl-2"}


async def test_tokens_refill_with_time(client_with, pool, clock):
    client = await client_with()
    body = request_body(0)
    bad = headers(body, signed=False)  # 401s: cheap requests that still spend the address's tokens
    for _ in range(60):
        assert (await client.post("/webhooks/intake", data=body, headers=bad)).status == 401
    assert (await client.post("/webhooks/intake", data=body, headers=bad)).status == 429
    clock.now += 0.5
    half = await client.post("/webhooks/intake", data=body, headers=bad)
    assert half.status == 429 and half.headers["Retry-After"] == "1"
    clock.now += 0.5
    assert (await client.post("/webhooks/intake", data=body, headers=bad)).status == 401
    assert (await client.post("/webhooks/intake", data=body, headers=bad)).status == 429
    clock.now += 60
    statuses = [(await client.post("/webhooks/intake", data=body, headers=bad)).status for _ in range(61)]
    assert statuses == [401] * 60 + [429]  # a full minute refills the whole burst, and no more


async def test_each_webhook_route_has_its_own_buckets(client_with, pool, clock):
    client = await client_with(webhook_rate_per_minute=1)
    body = request_body(0)
    assert (await client.post("/webhooks/intake", data=body, headers=headers(body))).status == 202
    assert (await client.post("/webhooks/intake", data=body, headers=headers(body))).status == 429
    points = json.dumps({"metrics": [{"name": "api_error_rate", "value": 1.5}]}).encode()
    assert (await client.post("/webhooks/metrics", data=points, headers=headers(points))).status == 202
    refused = await client.post("/webhooks/metrics", data=points, headers=headers(points))
    assert refused.status == 429
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM health_metrics") == 1


async def test_a_burst_above_the_rate_and_a_rate_of_zero(client_with, pool, clock):
    bursty = await client_with(webhook_rate_per_minute=6, webhook_rate_burst=3)
    body = request_body(0)
    bad = headers(body, signed=False)
    statuses = [(await bursty.post("/webhooks/intake", data=body, headers=bad)).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    off = await client_with(webhook_rate_per_minute=0)
    statuses = [(await off.post("/webhooks/intake", data=body, headers=bad)).status for _ in range(100)]
    assert statuses == [401] * 100


def test_idle_buckets_are_forgotten_and_the_map_is_bounded():
    clock = Clock()
    limiter = RateLimiter(60, 60, clock=clock, max_buckets=1000)
    for n in range(500):
        assert limiter.take(f"a{n}") is None
    assert len(limiter) == 500
    clock.now += 59  # not yet refilled: still remembered
    limiter.take("b")
    assert len(limiter) == 501
    clock.now += 1  # the first 500 have refilled: a new bucket would be the same
    limiter.take("c")
    assert len(limiter) == 2
    for n in range(5000):
        limiter.take(f"flood{n}")
    assert len(limiter) == 1000


def test_a_refused_request_takes_no_token():
    clock = Clock()
    limiter = RateLimiter(60, 1, clock=clock)
    assert limiter.take("k") is None
    waits = [limiter.take("k") for _ in range(100)]
    assert all(w == pytest.approx(1.0) for w in waits)
    clock.now += 1.0
    assert limiter.take("k") is None
