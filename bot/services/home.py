"""App Home, the "Create support case" shortcut and card-thread notes: the listeners' reads and
writes (App Home: the queue, the open alerts, your cases, today), and the shortcut's job (who wrote
the message, the case, the answer in its thread)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.messages import Workspace, respond, tell
from handlers.errors import CANNOT_POST
from handlers.home_views import (
    ALERTS_SHOWN,
    MY_CASES_SHOWN,
    HomeAlert,
    HomeBudget,
    HomeFacts,
    MyCase,
    TodayCounts,
    WaitingCase,
)
from handlers.notices import message_url
from handlers.services import HomeService
from handlers.shortcut import already_a_case_text, cannot_post_text, case_created_text
from pipelines.budgets import budget_states
from pipelines.detection import posting as alert_posting
from pipelines.intake import slack as slack_intake
from pipelines.intake.slack import SlackMessage, ThreadNote
from pipelines.jobs import JobName, ShortcutRequest
from pipelines.queue import queue_once
from pipelines.review import lookup

log = structlog.get_logger(__name__)

# A users.info answer that leaves the author unknown rather than failing the job.
_UNKNOWN_USER = frozenset({"user_not_found", "user_not_visible", "missing_scope"})


class SlackHomeService(HomeService):
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings) -> None:
        self._pool, self._client, self._settings = pool, client, settings
        self._workspace = Workspace(client)

    async def home(self, user_id: str) -> HomeFacts:
        now = datetime.now(UTC)
        # "Today" is the desk's day, in the configured time zone, whatever the viewer's.
        midnight = now.astimezone(self._settings.zone).replace(hour=0, minute=0, second=0, microsecond=0)
        queue = await lookup.queue_counts(self._pool)
        day = await lookup.day_counts(self._pool, midnight)
        mine, total = await lookup.my_cases(self._pool, user_id, MY_CASES_SHOWN)
        alerts, alerts_total = await alert_posting.open_alerts(self._pool, ALERTS_SHOWN)
        oldest = None
        if queue.oldest_short_id is not None and queue.oldest_waiting_since is not None:
            oldest = WaitingCase(queue.oldest_short_id, queue.oldest_subject, queue.oldest_waiting_since)
        return HomeFacts(
            queue_size=queue.awaiting_review, oldest=oldest,
            my_cases=tuple(MyCase(c.short_id, c.status, c.subject) for c in mine), my_total=total,
            today=TodayCounts(created=day.created, replied=day.replied, auto_sent=day.auto_sent,
                              sent_to_review=day.sent_to_review, escalated=day.escalated),
            alerts=await self._home_alerts(alerts), alerts_total=alerts_total,
            budgets=await self._budgets(now), as_of=now,
        )

    async def _budgets(self, now: datetime) -> tuple[HomeBudget, ...]:
        async with self._pool.acquire() as conn:
            states = await budget_states(conn, now, self._settings.zone)
        return tuple(HomeBudget(s.budget.name, s.budget.period, s.ratio, s.state == "exhausted")
                     for s in states if s.state != "ok")

    async def _home_alerts(self, alerts: list[alert_posting.OpenAlert]) -> tuple[HomeAlert, ...]:
        workspace = None
        if any(a.ts for a in alerts):
            try:
                workspace = await self._workspace.url()
            except SlackApiError:
                pass  # the links are a convenience; the list shows without them
        return tuple(
            HomeAlert(severity=a.severity, title=a.title, status=a.status, since=a.first_seen_at,
                      acknowledged_by=a.acknowledged_by,
                      url=message_url(workspace, a.channel, a.ts) if a.channel and a.ts else None)
            for a in alerts
        )

    async def submit_shortcut(self, delivery_id: str, request: ShortcutRequest) -> bool:
        return await queue_once(self._pool, delivery_id, JobName.SLACK_CASE, request.payload())

    async def add_thread_note(self, delivery_id: str, *, channel: str, thread_ts: str, ts: str, user: str,
                              text: str) -> bool:
        note = ThreadNote(channel=channel, thread_ts=thread_ts, ts=ts, user=user, text=text)
        case_id = await slack_intake.store_thread_note(self._pool, delivery_id, note)
        if case_id is not None:
            log.info("slack.thread_note", case_id=str(case_id), user=user)
        return case_id is not None

    async def create_case_from_shortcut(self, request: ShortcutRequest) -> None:
        """The shortcut's job: the message's case (made once), answered in the message's thread by
        the first shortcut on it; a later one tells only its user which case the message is."""
        email, name = await self._author(request.author)
        message = SlackMessage(channel=request.channel, ts=request.message_ts, text=request.text,
                               author_id=request.author_id, reporter=request.reporter, author_email=email,
                               author_name=name, thread_ts=request.thread_ts)
        intake = await slack_intake.create_case(self._pool, message)
        assert intake.case_id is not None and intake.short_id is not None
        short_id = intake.short_id

        async def answer() -> None:
            await self._answer(request, short_id)

        if not await slack_intake.acknowledge_once(self._pool, intake.case_id, message, answer):
            await tell(self._client, channel=request.channel, user=request.reporter,
                       text=already_a_case_text(short_id), thread_ts=request.reply_thread,
                       response_url=request.response_url)
        log.info("slack.shortcut_case", case_id=str(intake.case_id), outcome=intake.outcome.value)

    async def _author(self, user_id: str | None) -> tuple[str | None, str | None]:
        """The author's email and name; (None, None) for a bot or a user Slack will not show us."""
        if user_id is None:
            return None, None
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") not in _UNKNOWN_USER:
                raise
            log.warning("slack.author_unknown", user=user_id, error=exc.response.get("error"))
            return None, None
        user = response["user"]
        profile = user.get("profile") or {}
        name = profile.get("real_name") or user.get("real_name") or user.get("name")
        email = None if user.get("is_bot") else profile.get("email")
        return email or None, name or None

    async def _answer(self, request: ShortcutRequest, short_id: int) -> None:
        try:
            await self._client.chat_postMessage(channel=request.channel, thread_ts=request.reply_thread,
                                                text=case_created_text(short_id, request.reporter))
        except SlackApiError as exc:
            if exc.response.get("error") not in CANNOT_POST or not request.response_url:
                raise
            await respond(request.response_url, cannot_post_text(short_id))
