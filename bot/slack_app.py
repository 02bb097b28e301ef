"""The Bolt app in Socket Mode, with our listeners registered and the Web API client from settings."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.deps import Deps


def build_slack_app(deps: Deps, client: AsyncWebClient) -> AsyncApp:
    app = AsyncApp(client=client, process_before_response=False)

    async def inject_deps(context: dict, next: object) -> None:  # noqa: A002 (Bolt's name)
        # Bolt hands context keys to listeners by name, so they can declare `deps`.
        context["deps"] = deps
        await next()  # type: ignore[operator]

    app.middleware(inject_deps)
    handlers.register(app)
    return app


def socket_mode_handler(app: AsyncApp, app_token: str) -> AsyncSocketModeHandler:
    return AsyncSocketModeHandler(app, app_token)
