"""POST /webhooks/intake: authenticate, validate, store. Every rejection is JSON and writes nothing."""

from __future__ import annotations

import hashlib
import json

from aiohttp import web
from pydantic import ValidationError

from bot.web.http import DEPS, json_error
from pipelines.intake.webhook import intake_webhook
from pipelines.models import IntakeOutcome, IntakeRequest
from pipelines.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

MAX_BODY = 1024 * 1024


async def intake(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    secret = deps.settings.secret("webhook_secret")
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
    try:
        parsed = IntakeRequest.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return json_error(422, "invalid_request", "the request has invalid fields", details)
    replay_key = "sig:" + hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()[:32]
    result = await intake_webhook(deps.pool, parsed, replay_key=replay_key)
    body_out = {"case_id": str(result.case_id), "reference": f"CX-{result.short_id}", "status": result.status}
    if result.outcome is IntakeOutcome.DUPLICATE:
        return web.json_response({**body_out, "duplicate": True}, status=200)
    return web.json_response(body_out, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/intake", intake)
