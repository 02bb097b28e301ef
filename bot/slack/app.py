"""The Bolt app, with our listeners registered and the Web API client from settings: in Socket Mode
(SLACK_APP_TOKEN), or over HTTP at /slack/events with Slack's request signatures checked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from handlers import alert_actions, article_actions
from handlers.services import Services


def build_slack_app(services: Services, client: AsyncWebClient, signing_secret: str | None = None) -> AsyncApp:
    """With a signing secret (HTTP mode), Bolt refuses any request whose signature or timestamp is off."""
    app = AsyncApp(client=client, signing_secret=signing_secret, process_before_response=False,
                   request_verification_enabled=signing_secret is not None)

    async def inject_services(context: dict[str, Any], next: Callable[[], Awaitable[None]]) -> None:  # noqa: A002 (Bolt's name)
        # Bolt hands context keys to listeners by name, so they can declare `services`.
        context["services"] = services
        await next()

    app.middleware(inject_services)
    handlers.register(app)
    alert_actions.register(app)  # the alerts channel's buttons
    article_actions.register(app)  # drafted KB articles' buttons, in the metrics channel
    return app


def socket_mode_handler(app: AsyncApp, app_token: str) -> AsyncSocketModeHandler:
    return AsyncSocketModeHandler(app, app_token)


def http_route(app: AsyncApp) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler for POST /slack/events (HTTP mode)."""

    async def slack_events(request: web.Request) -> web.Response:
        # Bolt parses the body before it checks the signature, and fails (a 500) on one that is not
        # a JSON object or a form: refuse those first, so junk from anyone is a 400.
        try:
            parsed = parse_body(await request.text(), request.content_type)
        except ValueError:  # bad JSON or bad UTF-8
            parsed = None
        if not isinstance(parsed, dict):
            return web.json_response(  # bot/web/http.py's error shape (importing it would be a cycle)
                {"error": {"code": "invalid_body", "message": "not a Slack request body", "details": None}}, status=400)
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    return slack_events
