"""The review SLA job: claims due reminders and timeouts (pipelines.review.sla) and posts them, a
reminder in the card's thread mentioning the reviewers, a timeout in the alerts channel linking the
card. A post that fails is logged and its claim rolled back; the next tick (every minute) retries."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import structlog
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from handlers import mrkdwn
from handlers.mrkdwn import one_line, safe
from pipelines.review.sla import NoticeKind, PostFailed, SlaNotice, SlaRun, run_due

log = structlog.get_logger(__name__)

SUBJECT_MAX = 200
_SLACK_ID = re.compile(r"[A-Z0-9]{2,30}")
_SLACK_TS = re.compile(r"\d{1,12}\.\d{1,9}")


class ReviewSlaJob:
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings) -> None:
        self._pool, self._client, self._settings = pool, client, settings
        self._workspace_url: str | None = None

    async def run(self, now: datetime) -> SlaRun:
        result = await run_due(self._pool, now, self._post)
        for failure in result.failed:
            log.warning("review_sla.post_failed", kind=failure.notice.kind.value,
                        case_id=str(failure.notice.case_id), error=failure.error)
        if result.reminders or result.timeouts:
            log.info("review_sla.posted", reminders=len(result.reminders), timeouts=len(result.timeouts))
        return result

    async def _post(self, notice: SlaNotice) -> None:
        try:
            if notice.kind is NoticeKind.REMINDER:
                text = reminder_text(notice, self._settings.slack_reviewer_group)
                await self._client.chat_postMessage(channel=notice.card_channel, thread_ts=notice.card_ts,
                                                    text=text, blocks=_blocks(text))
            else:
                link = card_link(await self._workspace(), notice.card_channel, notice.card_ts)
                text = timeout_text(notice, link, self._settings.review_timeout_hours)
                await self._client.chat_postMessage(channel=self._settings.slack_alerts_channel,
                                                    text=text, blocks=_blocks(text))
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _workspace(self) -> str | None:
        # Message links are built from the workspace's URL (auth.test), asked once per run.
        if self._workspace_url is None:
            answer = await self._client.auth_test()
            self._workspace_url = str(answer.get("url") or "")
        return self._workspace_url or None


def reminder_text(notice: SlaNotice, reviewer_group: str | None) -> str:
    if notice.owner and _SLACK_ID.fullmatch(notice.owner):
        who = f"<@{notice.owner}>"  # someone took the case: the reminder is theirs
    elif reviewer_group and _SLACK_ID.fullmatch(reviewer_group):
        who = f"<!subteam^{reviewer_group}>"
    else:
        who = "Reviewers"
    return (f"{who}, {_case_line(notice)} is still waiting for review. It is due {_when(notice.due_at)}; "
            "if it is not decided by then it is escalated to the alerts channel.")


def timeout_text(notice: SlaNotice, link: str, timeout_hours: float) -> str:
    taken = f" It was taken by <@{notice.owner}>." if notice.owner and _SLACK_ID.fullmatch(notice.owner) else ""
    return (f":alarm_clock: Review overdue: {_case_line(notice)} was due {_when(notice.due_at)} "
            f"(review timeout {timeout_hours:g} h) and is not decided.{taken} {link}")


def card_link(workspace_url: str | None, channel: str, ts: str) -> str:
    """A link to the card: its permalink when the workspace URL is known, else Slack's redirect to
    the channel. Both parts come from Slack, but are checked before they go inside `<…>`."""
    if not (_SLACK_ID.fullmatch(channel) and _SLACK_TS.fullmatch(ts)):
        return "(the card's message could not be linked)"
    if workspace_url and re.fullmatch(r"https://[A-Za-z0-9.-]+/?", workspace_url):
        return f"<{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}|Open the card>"
    return f"<https://slack.com/app_redirect?channel={channel}|Open the review channel>"


def _case_line(notice: SlaNotice) -> str:
    subject = safe(one_line(notice.subject or ""), SUBJECT_MAX) or "(no subject)"
    priority = safe(one_line(notice.priority or "medium"), 20)
    return f"*CX-{notice.short_id}* ({priority}) “{subject}”"


def _when(due_at: datetime) -> str:
    # Each reader sees their own time zone; the fallback (notifications, old clients) is UTC.
    fallback = due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(due_at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _blocks(text: str) -> list[dict[str, Any]]:
    # verbatim: no automatic linking of bare @mentions or #channels in the customer's subject.
    return [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn.truncate(text, mrkdwn.SECTION_TEXT),
                                         "verbatim": True}}]
