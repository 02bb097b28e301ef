"""Replies to Slack-born cases, posted in the thread of the message the case came from. Each reply
carries its outbox key in the message metadata, so a retried send finds it instead of posting twice."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers import mrkdwn
from handlers.errors import CANNOT_POST
from pipelines.ports import DeliveryRefused

EVENT_TYPE = "cx_reply"


class SlackThreadPoster:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def post(self, channel: str, thread_ts: str, text: str, key: str) -> str:
        try:
            posted = await self._client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=mrkdwn.truncate(mrkdwn.escape(text), 39_000),
                metadata={"event_type": EVENT_TYPE, "event_payload": {"key": key}}, unfurl_links=False,
            )
        except SlackApiError as exc:
            if exc.response.get("error") in CANNOT_POST:
                raise DeliveryRefused(f"Slack refused the reply: {exc.response.get('error')}") from exc
            raise
        ts: str = posted["ts"]
        return ts

    async def find(self, channel: str, thread_ts: str, key: str) -> str | None:
        try:
            return await self._find(channel, thread_ts, key)
        except SlackApiError as exc:
            if exc.response.get("error") in CANNOT_POST:
                return None  # unreadable, so nothing of ours can be there: the post says why
            raise

    async def _find(self, channel: str, thread_ts: str, key: str) -> str | None:
        async for page in await self._client.conversations_replies(channel=channel, ts=thread_ts,
                                                                   include_all_metadata=True, limit=200):
            for message in page.get("messages", []):
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == EVENT_TYPE and metadata.get("event_payload", {}).get("key") == key:
                    ts: str = message["ts"]
                    return ts
        return None
