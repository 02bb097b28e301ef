"""POST /webhooks/intake and POST /webhooks/metrics: authenticate, validate, store. Every rejection
is JSON and writes nothing."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.settings import Settings
from bot.web.http import DEPS, json_error
from bot.web.rate_limit import RateLimiter, retry_after_header
from pipelines.detection.metric_points import MetricsRequest, record_metric_points
from pipelines.intake.webhook import WorkerWakeup, intake_webhook
from pipelines.models import IntakeOutcome, IntakeRequest
from pipelines.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

MAX_BODY = 1024 * 1024


class WebhookLimits:
    """Each route's requests per source address, and per signing key (the secret that verified
    the request), as token buckets in this process. The address is checked before the body is
    read; the key once the signature is verified, so a forger cannot spend the key's tokens."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        rate = settings.webhook_rate_per_minute
        burst = settings.webhook_rate_burst or rate
        self.per_minute = rate
        self._by_address = RateLimiter(rate, burst, clock=clock) if rate else None
        self._by_key = RateLimiter(rate, burst, clock=clock) if rate else None
        self._proxies = settings.webhook_trusted_proxies
        secret = settings.secret("webhook_secret") or ""
        # The key's bucket is named by a fingerprint, so the secret itself is never a dict key.
        self._key_name = hashlib.sha256(secret.encode()).hexdigest()[:16]

    def source_address(self, request: web.Request) -> str:
        """The peer, or with N trusted proxies the N-th X-Forwarded-For entry from the right: the
        entries left of it were written by the client and prove nothing."""
        peer = request.remote or "unknown"
        if not self._proxies:
            return peer
        hops = [h.strip() for line in request.headers.getall("X-Forwarded-For", ()) for h in line.split(",")]
        return hops[-self._proxies] if len(hops) >= self._proxies and hops[-self._proxies] else peer

    def refuse_address(self, request: web.Request) -> web.Response | None:
        if self._by_address is None:
            return None
        address = self.source_address(request)
        wait = self._by_address.take(f"{request.path}|{address}")
        return None if wait is None else self._too_many(wait, "address", "from this address")

    def refuse_key(self, request: web.Request) -> web.Response | None:
        """Called once the request's signature verified with WEBHOOK_SECRET, the one signing key."""
        if self._by_key is None:
            return None
        wait = self._by_key.take(f"{request.path}|{self._key_name}")
        return None if wait is None else self._too_many(wait, "signing_key", "signed with this key")

    def _too_many(self, wait: float, limit: str, whose: str) -> web.Response:
        retry_after = retry_after_header(wait)
        return json_error(
            429, "rate_limited",
            f"more than {self.per_minute} requests a minute {whose}; nothing was stored, retry in {retry_after} s",
            {"limit": limit, "retry_after": int(retry_after)},
            headers={"Retry-After": retry_after},
        )


LIMITS = web.AppKey("webhook_limits", WebhookLimits)
WAKEUP = web.AppKey("worker_wakeup", WorkerWakeup)


# JSON allows "\u0000" and unpaired "\ud800"; PostgreSQL text and jsonb refuse both.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable_text(data: Any) -> bool:
    """Whether any key or string in the parsed body holds what PostgreSQL cannot store."""
    stack = [data]  # a loop, not recursion: the body may nest as deep as the parser allowed
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@dataclass(frozen=True)
class SignedJson:
    data: Any
    replay_key: str  # the same for a replayed request (same timestamp and signature)


async def _signed_json(request: web.Request) -> SignedJson | web.Response:
    """The parsed body of an authentic, fresh, JSON request; otherwise the error response to send."""
    secret = request.app[DEPS].settings.secret("webhook_secret")
    if secret is None:
        return json_error(503, "not_configured", "webhooks are off until WEBHOOK_SECRET is set")
    limits = request.app[LIMITS]
    if (refused := limits.refuse_address(request)) is not None:
        return refused
    if request.content_length is not None and request.content_length > MAX_BODY:
        return json_error(413, "too_large", f"the body may be at most {MAX_BODY} bytes")
    body = await request.read()  # the app's client_max_size stops a body without Content-Length
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    problem = verify(secret, timestamp, signature, body)
    if problem is not None:
        return json_error(401, "bad_signature", problem.value)
    if (refused := limits.refuse_key(request)) is not None:
        return refused
    if request.content_type != "application/json":
        return json_error(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        data = json.loads(body)
    except ValueError as exc:  # includes bad UTF-8
        return json_error(400, "invalid_json", f"the body is not JSON: {exc}")
    except RecursionError:  # a 1 MB body can nest deeper than the parser's stack
        return json_error(400, "invalid_json", "the body nests too deeply")
    if _unstorable_text(data):
        return json_error(400, "invalid_text", "a string holds a NUL character or a lone UTF-16 surrogate, "
                                               "which PostgreSQL cannot store")
    replay_key = "sig:" + hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()[:32]
    return SignedJson(data, replay_key)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


async def intake(request: web.Request) -> web.Response:
    signed = await _signed_json(request)
    if isinstance(signed, web.Response):
        return signed
    try:
        parsed = IntakeRequest.model_validate(signed.data)
    except ValidationError as exc:
        return json_error(422, "invalid_request", "the request has invalid fields", _field_errors(exc))
    result = await intake_webhook(request.app[DEPS].pool, parsed, replay_key=signed.replay_key,
                                  wakeup=request.app[WAKEUP])
    body_out = {"case_id": str(result.case_id), "reference": f"CX-{result.short_id}", "status": result.status}
    if result.outcome is IntakeOutcome.DUPLICATE:
        return web.json_response({**body_out, "duplicate": True}, status=200)
    return web.json_response(body_out, status=202)


def _point_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """The field errors, each naming its point's index in `metrics` (null for the body as a whole)."""
    details: list[dict[str, Any]] = []
    for e in exc.errors(include_url=False, include_input=False):
        loc = e["loc"]
        if len(loc) >= 2 and loc[0] == "metrics" and isinstance(loc[1], int):
            index, field = loc[1], ".".join(str(p) for p in loc[2:]) or "point"
        else:
            index, field = None, ".".join(str(p) for p in loc) or "body"
        details.append({"index": index, "field": field, "message": e["msg"]})
    return details


async def metrics_webhook(request: web.Request) -> web.Response:
    signed = await _signed_json(request)
    if isinstance(signed, web.Response):
        return signed
    try:
        parsed = MetricsRequest.model_validate(signed.data)
    except ValidationError as exc:
        return json_error(422, "invalid_request", "the request has invalid points; none was stored",
                          _point_errors(exc))
    accepted = await record_metric_points(request.app[DEPS].pool, parsed)
    return web.json_response({"accepted": accepted}, status=202)


def add_routes(app: web.Application) -> None:
    """The webhook routes, limited by the settings' WEBHOOK_RATE_*; a test may set app[LIMITS]
    again before the app starts, to give the limits its own clock."""
    app[LIMITS] = WebhookLimits(app[DEPS].settings)
    app[WAKEUP] = WorkerWakeup(app[DEPS].pool)
    app.router.add_post("/webhooks/intake", intake)
    app.router.add_post("/webhooks/metrics", metrics_webhook)
