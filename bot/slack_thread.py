"""Replies to Slack-born cases, posted in the thread of the message the case came from. Each reply
carries its outbox key in the message metadata, so a retried send finds it instead of posting twice."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from handlers import mrkdwn

EVENT_TYPE = "cx_reply"


class SlackThreadPoster:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def post(self, channel: str, thread_ts: str, text: str, key: str) -> str:
        posted = await self._client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=mrkdwn.truncate(mrkdwn.escape(text), 39_000),
            metadata={"event_type": EVENT_TYPE, "event_payload": {"key": key}}, unfurl_links=False,
        )
        return posted["ts"]

    async def find(self, channel: str, thread_ts: str, key: str) -> str | None:
        async for page in await self._client.conversations_replies(channel=channel, ts=thread_ts,
                                                                   include_all_metadata=True, limit=200):
            for message in page.get("messages", []):
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == EVENT_TYPE and metadata.get("event_payload", {}).get("key") == key:
                    return message["ts"]
        return None
