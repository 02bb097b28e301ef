"""Proactive alerts in Slack: what the alert listeners need (clicks queued before the ack) and the
two jobs that talk to Slack: bring an alert's message up to date (post it, edit it in place, remind
its thread), and carry out a reviewer's Acknowledge, Create Jira or Resolve."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.alerts import UrgentAlertService
from bot.settings import Settings
from bot.slack.messages import tell
from bot.slack.reviewers import ReviewerCheck
from db.pool import transaction
from handlers.alert_card import (
    AlertCard,
    AlertSignal,
    ExampleCase,
    alert_blocks,
    alert_lost_race_text,
    alert_refusal_text,
    alert_refused_text,
    alert_reminder_text,
    alert_text,
)
from handlers.errors import CANNOT_POST
from handlers.notices import notice_blocks
from handlers.services import AlertService
from pipelines.detection import alert_actions, posting
from pipelines.detection.posting import AlertView, Posted
from pipelines.jobs import AlertActionRequest, JobName
from pipelines.ports import AlertTracker
from pipelines.queue import queue_once

log = structlog.get_logger(__name__)

# The message is gone: a new one is posted rather than none.
_GONE = frozenset({"message_not_found", "channel_not_found"})


def alert_card(view: AlertView, settings: Settings) -> AlertCard:
    facts = view.facts
    key, jira_url = facts.jira_issue_key, settings.jira_url
    steps = facts.claude.get("recommended_actions")
    return AlertCard(
        alert_id=facts.alert_id, kind=facts.kind, severity=facts.severity, status=facts.status, title=facts.title,
        first_seen_at=facts.first_seen_at, last_seen_at=facts.last_seen_at, summary=facts.description,
        summary_by_ai=facts.summary_source == "claude", hypothesis=facts.hypothesis,
        recommended=tuple(s for s in steps if isinstance(s, str)) if isinstance(steps, list) else (),
        signals=tuple(_signal(s, facts.kind) for s in facts.signals),
        cases=tuple(ExampleCase(c.short_id, c.subject) for c in view.cases), case_count=facts.case_count,
        customer_count=view.affected.total, tiers=tuple(sorted(view.affected.tiers.items())),
        customers=tuple(view.affected.names), acknowledged_by=facts.acknowledged_by,
        acknowledged_at=facts.acknowledged_at, resolved_by=facts.resolved_by, resolved_at=facts.resolved_at,
        quiet_minutes=settings.alert_resolve_after_minutes, jira_key=key,
        jira_url=f"{jira_url.rstrip('/')}/browse/{key}" if jira_url and key else None,
        jira_pending=key is None and facts.jira_claim is not None,
    )


def _signal(signal: dict[str, Any], kind: str) -> AlertSignal:
    title = signal.get("title")
    return AlertSignal(kind=str(signal.get("kind") or kind), figures=posting.signal_figures(signal),
                       title=title if isinstance(title, str) else None)


class IncidentAlertService(AlertService):
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings,
                 tracker: AlertTracker | None = None, urgent: UrgentAlertService | None = None) -> None:
        self._pool, self._client, self._settings, self._tracker = pool, client, settings, tracker
        self._reviewers = ReviewerCheck(client, group=settings.slack_reviewer_group,
                                        channel=settings.slack_review_channel)
        self._messages = _AlertMessages(client, settings, urgent)

    async def submit(self, delivery_id: str, request: AlertActionRequest) -> bool:
        return await queue_once(self._pool, delivery_id, JobName.ALERT_ACTION, request.payload())

    async def post(self, alert_id: UUID, *, remind: bool = False) -> Posted:
        """The job (alert.post): post the alert's message or edit it up to the alert's revision, and
        remind its thread if asked. A Slack failure raises: nothing is recorded, the job is retried."""
        posted = await posting.bring_up_to_date(self._pool, alert_id, self._messages, remind=remind)
        log.info("alert.post", alert_id=str(alert_id), outcome=posted.outcome.value, reminded=posted.reminded)
        return posted

    async def run_action(self, request: AlertActionRequest) -> None:
        """A reviewer's click: refused unless they are a reviewer; otherwise applied and the message
        edited, and a click that came second (or that Jira refused) is told why nothing happened."""
        if not await self._reviewers.allows(request.reviewer):
            log.info("alert.refused", reviewer=request.reviewer, alert_id=str(request.alert_id))
            await tell(self._client, channel=request.channel, user=request.reviewer,
                       text=alert_refusal_text(request.reviewer))
            return
        result = await alert_actions.apply(self._pool, request, self._tracker)
        log.info("alert.action", action=request.action.value, reviewer=request.reviewer,
                 alert_id=str(request.alert_id), done=result.done, issue=result.issue_key)
        try:
            await self.post(request.alert_id)
        except Exception:  # the click is applied: retrying this job would tell its author they lost
            log.warning("alert.refresh_failed", alert_id=str(request.alert_id), exc_info=True)
            async with transaction(self._pool) as conn:
                await posting.queue_post(conn, request.alert_id)
        if result.done:
            return
        if result.refused:
            text = alert_refused_text(result.refused)
        else:
            text = alert_lost_race_text(result.winner, result.winner_did or "", at=result.at,
                                        issue_key=result.issue_key)
        await tell(self._client, channel=request.channel, user=request.reviewer, text=text)


class _AlertMessages(posting.Messenger):
    """The post step's Slack: the alert's message in the alerts channel, and its thread."""

    def __init__(self, client: AsyncWebClient, settings: Settings, urgent: UrgentAlertService | None) -> None:
        self._client, self._settings, self._urgent = client, settings, urgent

    async def post(self, alert: AlertView) -> tuple[str, str]:
        card = alert_card(alert, self._settings)
        posted = await self._client.chat_postMessage(channel=self._settings.slack_alerts_channel,
                                                     blocks=alert_blocks(card), text=alert_text(card),
                                                     unfurl_links=False, unfurl_media=False)
        return str(posted["channel"]), str(posted["ts"])

    async def update(self, alert: AlertView, channel: str, ts: str) -> bool:
        card = alert_card(alert, self._settings)
        try:
            await self._client.chat_update(channel=channel, ts=ts, blocks=alert_blocks(card), text=alert_text(card))
        except SlackApiError as exc:
            if exc.response.get("error") not in _GONE:
                raise
            log.warning("alert.message_gone", alert_id=str(alert.facts.alert_id), error=exc.response.get("error"))
            return False
        return True

    async def refresh_critical_case(self, case_id: UUID) -> None:
        if self._urgent is not None:
            await self._urgent.refresh(case_id)

    async def remind(self, alert: AlertView, channel: str, ts: str) -> None:
        text = alert_reminder_text(alert_card(alert, self._settings), self._settings.slack_reviewer_group)
        try:
            await self._client.chat_postMessage(channel=channel, thread_ts=ts, text=text, blocks=notice_blocks(text))
        except SlackApiError as exc:
            # The message's thread is out of reach (deleted, archived): the reminder is dropped, not
            # retried forever; the message itself is still brought up to date.
            if exc.response.get("error") not in CANNOT_POST:
                raise
            log.warning("alert.reminder_failed", alert_id=str(alert.facts.alert_id), error=exc.response.get("error"))
