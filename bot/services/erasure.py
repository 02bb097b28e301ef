"""Slack's side of erasing a customer: the messages the desk posted about their cases, and the
desk's own replies in those messages' threads, now say the content was erased."""

from __future__ import annotations

from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.erasure_notice import ERASED_TEXT, erased_blocks
from pipelines.jobs import ErasureNotice

log = structlog.get_logger(__name__)

# A message or channel someone already deleted has nothing left to erase.
_GONE = ("message_not_found", "channel_not_found", "thread_not_found", "is_archived")


async def rewrite_erased(client: AsyncWebClient, notice: ErasureNotice) -> int:
    """Replace each message and the bot's replies in its thread; how many messages were rewritten.
    Running it again rewrites them to the same text, so a retried job is harmless."""
    me = await client.auth_test()
    rewritten = 0
    for ref in notice.messages:
        if await _rewrite(client, ref.channel, ref.ts):
            rewritten += 1
            for ts in await _own_replies(client, ref.channel, ref.ts, me.get("bot_id")):
                rewritten += await _rewrite(client, ref.channel, ts)
    log.info("erasure.slack_rewritten", messages=rewritten)
    return rewritten


async def _rewrite(client: AsyncWebClient, channel: str, ts: str) -> bool:
    try:
        await client.chat_update(channel=channel, ts=ts, text=ERASED_TEXT, blocks=erased_blocks())
    except SlackApiError as exc:
        if exc.response.get("error") not in _GONE:
            raise
        log.warning("erasure.message_gone", channel=channel, ts=ts, error=exc.response.get("error"))
        return False
    return True


async def _own_replies(client: AsyncWebClient, channel: str, ts: str, bot_id: str | None) -> list[str]:
    replies: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.conversations_replies(channel=channel, ts=ts, cursor=cursor, limit=200)
        messages: list[dict[str, Any]] = page.get("messages") or []
        replies += [m["ts"] for m in messages if m["ts"] != ts and bot_id is not None and m.get("bot_id") == bot_id]
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return replies
