"""POST /webhooks/intake and POST /webhooks/metrics: authenticate, validate, store. Every rejection
is JSON and writes nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.web.http import DEPS, json_error
from pipelines.detection.metric_points import MetricsRequest, record_metric_points
from pipelines.intake.webhook import intake_webhook
from pipelines.models import IntakeOutcome, IntakeRequest
from pipelines.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class SignedJson:
    data: Any
    replay_key: str  # the same for a replayed request (same timestamp and signature)


async def _signed_json(request: web.Request) -> SignedJson | web.Response:
    """The parsed body of an authentic, fresh, JSON request; otherwise the error response to send."""
    secret = request.app[DEPS].settings.secret("webhook_secret")
    if secret is None:
        return json_error(503, "not_configured", "webhooks are off until WEBHOOK_SECRET is set")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return json_error(413, "too_large", f"the body may be at most {MAX_BODY} bytes")
    body = await request.read()  # the app's client_max_size stops a body without Content-Length
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    problem = verify(secret, timestamp, signature, body)
    if problem is not None:
        return json_error(401, "bad_signature", problem.value)
    if request.content_type != "application/json":
        return json_error(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        data = json.loads(body)
    except ValueError as exc:  # includes bad UTF-8
        return json_error(400, "invalid_json", f"the body is not JSON: {exc}")
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
    result = await intake_webhook(request.app[DEPS].pool, parsed, replay_key=signed.replay_key)
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
    app.router.add_post("/webhooks/intake", intake)
    app.router.add_post("/webhooks/metrics", metrics_webhook)
