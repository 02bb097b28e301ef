"""The App Home tab: published fresh each time a user opens it."""

from __future__ import annotations

from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.home_views import HomeFacts, home_view


class HomeDesk(Protocol):
    """What the Home listener needs from the wiring (bot.services.home)."""

    async def home(self, user_id: str) -> HomeFacts: ...


async def on_home_opened(event: dict[str, Any], context: dict[str, Any], client: AsyncWebClient) -> None:
    # The event also fires for the Messages tab, which has no view of ours to refresh.
    if event.get("tab", "home") != "home":
        return
    user = event["user"]
    desk: HomeDesk = context["deps"].home_desk
    await client.views_publish(user_id=user, view=home_view(await desk.home(user)))


def register(app: AsyncApp) -> None:
    # Bolt acknowledges events before running the listener: the reads and views.publish happen after the ack.
    app.event("app_home_opened")(on_home_opened)
