"""The urgent alert of a critical case, in the alerts channel: posted once by its job, and refreshed
in place when someone acts on the case (who took it, no more Take button)."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.messages import Workspace
from handlers.notices import UrgentCase, message_url, urgent_alert_blocks, urgent_alert_text
from pipelines.review import urgent

log = structlog.get_logger(__name__)


class UrgentAlertService:
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings) -> None:
        self._pool, self._client, self._settings = pool, client, settings
        self._workspace = Workspace(client)

    async def post(self, case_id: UUID) -> bool:
        """The job (case.urgent_alert): post the case's alert unless it was posted already, or the
        case was taken or finished meanwhile (a late retry)."""
        workspace = await self._workspace_url()  # asked before the alert's row is locked, not while
        shown: list[str | None] = []

        async def post(facts: urgent.UrgentCaseFacts) -> tuple[str, str]:
            case = self._view(facts, workspace)
            posted = await self._client.chat_postMessage(channel=self._settings.slack_alerts_channel,
                                                         blocks=urgent_alert_blocks(case), text=urgent_alert_text(case),
                                                         unfurl_links=False)
            shown.append(facts.owner)
            return str(posted["channel"]), str(posted["ts"])

        posted = await urgent.alert_once(self._pool, case_id, post)
        log.info("alert.urgent_case", case_id=str(case_id), posted=posted)
        if posted:
            # Someone may have taken the case while the alert was on its way, and their click's
            # refresh found no alert yet: show them.
            now = await urgent.urgent_case(self._pool, case_id)
            if now is not None and now.owner != shown[0]:
                await self.refresh(case_id)
        return posted

    async def refresh(self, case_id: UUID) -> None:
        """Show the case's owner and card on its alert, if it has one. Best effort: the alert only
        reports, and a failure here must not retry the reviewer's click that caused it."""
        try:
            facts = await urgent.urgent_case(self._pool, case_id)
            if facts is None or facts.alert_channel is None or facts.alert_ts is None:
                return
            case = self._view(facts, await self._workspace_url())
            await self._client.chat_update(channel=facts.alert_channel, ts=facts.alert_ts,
                                           blocks=urgent_alert_blocks(case), text=urgent_alert_text(case))
        except Exception:
            log.warning("alert.refresh_failed", case_id=str(case_id), exc_info=True)

    async def _workspace_url(self) -> str | None:
        try:
            return await self._workspace.url()
        except SlackApiError:
            return None  # the card link is a convenience; the alert goes out without it

    @staticmethod
    def _view(facts: urgent.UrgentCaseFacts, workspace: str | None) -> UrgentCase:
        card_url = None
        if facts.card_channel and facts.card_ts:
            card_url = message_url(workspace, facts.card_channel, facts.card_ts)
        return UrgentCase(
            case_id=facts.case_id, short_id=facts.short_id, priority=facts.priority,
            reason=facts.reason or "routed to a person at once", customer_email=facts.customer_email,
            customer_name=facts.customer_name, tier=facts.tier, category=facts.category,
            subcategory=facts.subcategory, subject=facts.subject, summary=facts.summary, owner=facts.owner,
            card_url=card_url,
        )
