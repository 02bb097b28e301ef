"""Budget notices in the alerts channel: the warning near a budget's limit and the notice that it was
reached and the product runs degraded, each once per budget and period."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import asyncpg
import structlog
from slack_sdk.web.async_client import AsyncWebClient

from db.budgets import NoticeLevel
from handlers.mrkdwn import escape
from pipelines.budgets import BudgetState, Clock, budget_states, post_notices, utc_now

log = structlog.get_logger(__name__)


def notice_text(state: BudgetState, level: NoticeLevel) -> str:
    b = state.budget
    scope = f"step `{escape(b.step)}`" if b.step else "all steps"
    if b.provider:
        scope += f", {escape(b.provider)}"
    spent = f"${state.spent_usd:,.2f} of ${b.limit_usd:,.2f} ({state.ratio:.0%})"
    period = f"this {'day' if b.period == 'daily' else 'month'} (since {state.bounds.first_day.isoformat()})"
    if level == "warning":
        return (f":warning: AI budget *{escape(b.name)}* ({scope}) is at {spent} {period}. "
                "At 100% Claude calls it covers stop until the next period.")
    return (f":rotating_light: AI budget *{escape(b.name)}* ({scope}) is reached: {spent} {period}. "
            "Running degraded until the next period: triage keeps the local model, drafts are extractive, "
            "incident summaries keep their template, and every case goes to review.")


class BudgetAlertService:
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, channel: str, zone: ZoneInfo,
                 clock: Clock = utc_now) -> None:
        self._pool, self._client, self._channel, self._zone, self._clock = pool, client, channel, zone, clock

    async def check(self) -> list[tuple[str, str]]:
        """The job (budget.check): post whichever notices are due and not posted yet this period."""

        async def post(state: BudgetState, level: NoticeLevel) -> None:
            await self._client.chat_postMessage(channel=self._channel, text=notice_text(state, level),
                                                unfurl_links=False)

        async with self._pool.acquire() as conn:
            states = await budget_states(conn, self._clock(), self._zone)
        posted = await post_notices(self._pool, states, post)
        if posted:
            log.info("budget.notices", posted=posted)
        return posted
