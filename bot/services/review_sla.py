"""The review SLA job: claims due reminders and timeouts (pipelines.review.sla) and posts them, a
reminder in the card's thread mentioning the reviewers, a timeout in the alerts channel linking the
card. A post that fails is logged and its claim rolled back; the next tick (every minute) retries."""

from __future__ import annotations

from datetime import datetime

import aiohttp
import asyncpg
import structlog
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.messages import Workspace
from handlers.notices import SlaCase, card_link, notice_blocks, reminder_text, timeout_text
from pipelines.review.sla import NoticeKind, PostFailed, SlaNotice, SlaRun, run_due

log = structlog.get_logger(__name__)


class ReviewSlaService:
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings) -> None:
        self._pool, self._client, self._settings = pool, client, settings
        self._workspace = Workspace(client)

    async def run(self, now: datetime) -> SlaRun:
        result = await run_due(self._pool, now, self._post)
        for failure in result.failed:
            log.warning("review_sla.post_failed", kind=failure.notice.kind.value,
                        case_id=str(failure.notice.case_id), error=failure.error)
        if result.reminders or result.timeouts:
            log.info("review_sla.posted", reminders=len(result.reminders), timeouts=len(result.timeouts))
        return result

    async def _post(self, notice: SlaNotice) -> None:
        case = SlaCase(short_id=notice.short_id, priority=notice.priority, subject=notice.subject,
                       owner=notice.owner, due_at=notice.due_at)
        try:
            if notice.kind is NoticeKind.REMINDER:
                text = reminder_text(case, self._settings.slack_reviewer_group)
                await self._client.chat_postMessage(channel=notice.card_channel, thread_ts=notice.card_ts,
                                                    text=text, blocks=notice_blocks(text))
            else:
                link = card_link(await self._workspace.url(), notice.card_channel, notice.card_ts)
                text = timeout_text(case, link, self._settings.review_timeout_hours)
                await self._client.chat_postMessage(channel=self._settings.slack_alerts_channel,
                                                    text=text, blocks=notice_blocks(text))
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
