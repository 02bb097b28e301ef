"""The App Home tab: published fresh each time a user opens it."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.home_views import home_view
from handlers.services import Services


async def on_home_opened(event: dict[str, Any], services: Services, client: AsyncWebClient) -> None:
    # The event also fires for the Messages tab, which has no view of ours to refresh.
    if event.get("tab", "home") != "home":
        return
    user = event["user"]
    await client.views_publish(user_id=user, view=home_view(await services.home.home(user)))


def register(app: AsyncApp) -> None:
    # Bolt acknowledges events before running the listener: the reads and views.publish happen after the ack.
    app.event("app_home_opened")(on_home_opened)
