"""The review hub: what the card listeners need (clicks queued before the ack, the card for a modal,
the reviewer check) and the two jobs that talk to Slack (post or refresh a case's card; carry out a
reviewer's click)."""

from __future__ import annotations

from functools import partial
from typing import Any, get_args
from uuid import UUID

import asyncpg
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.alerts import UrgentAlertService
from bot.settings import Settings
from bot.slack.click_inbox import ClickInbox
from bot.slack.messages import channel_id, tell
from bot.slack.reviewers import ReviewerCheck
from db.cases import REVIEWABLE
from db.lifecycle import RESOLVABLE
from handlers import mrkdwn
from handlers.review_card import (
    ReviewCard,
    card_fallback_text,
    lost_race_text,
    no_longer_waiting_text,
    outcome_text,
    refusal_text,
    review_card_blocks,
)
from handlers.services import ReviewService
from pipelines.jobs import ActionRequest
from pipelines.ports import Tracker
from pipelines.replies.outbox import Sender
from pipelines.review import decisions as review
from pipelines.taxonomy import Priority, Taxonomy

log = structlog.get_logger(__name__)

# Each card carries its case in the message metadata, so a retried post finds what a dead one left.
CARD_EVENT = "cx_review_card"
RECENT_CARDS = 200  # how far back a retried post looks for the card a dead attempt posted

# chat.postMessage takes at most 40,000 characters of text; the thread copy of a long message
# stops a little before that.
THREAD_TEXT = 39_000


def card_from_facts(facts: review.CardFacts, jira_url: str | None = None) -> ReviewCard:
    outcome = outcome_text(facts.review_status, facts.review_comments)
    return ReviewCard(
        case_id=facts.case_id, short_id=f"CX-{facts.short_id}", priority=facts.priority,
        category=facts.category, subcategory=facts.subcategory, customer_name=facts.customer_name,
        customer_email=facts.customer_email, tier=facts.tier, confidence=facts.confidence,
        review_reason=facts.decision_reason or facts.triage_reason or "needs a reviewer", summary=facts.summary,
        subject=facts.subject, message=facts.description, draft_id=facts.draft_id, draft=facts.draft,
        citations=tuple(facts.citations), state=facts.status, actionable=facts.status in REVIEWABLE,
        owner=facts.owner, outcome=outcome, acted_by=facts.reviewed_by if outcome else None,
        acted_at=facts.reviewed_at if outcome else None, jira_key=facts.jira_issue_key, review_id=facts.review_id,
        jira_url=f"{jira_url.rstrip('/')}/browse/{facts.jira_issue_key}" if jira_url and facts.jira_issue_key else None,
        resolvable=facts.status in RESOLVABLE, resolution_type=facts.resolution_type, resolved_at=facts.resolved_at,
        resolved_by=facts.resolved_by, csat=facts.csat,
    )


class SlackReviewService(ReviewService):
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings, sender: Sender,
                 tracker: Tracker | None = None, taxonomy: Taxonomy | None = None,
                 alerts: UrgentAlertService | None = None) -> None:
        self._pool, self._client, self._settings, self._sender = pool, client, settings, sender
        self._tracker, self._taxonomy, self._alerts = tracker, taxonomy, alerts
        self._inbox = ClickInbox(partial(review.submit_many, pool))
        self._reviewers = ReviewerCheck(client, group=settings.slack_reviewer_group,
                                        channel=settings.slack_review_channel)

    async def submit(self, delivery_id: str, request: ActionRequest) -> bool:
        return await self._inbox.submit(delivery_id, request)

    async def is_reviewer(self, user_id: str) -> bool:
        return await self._reviewers.allows(user_id)

    async def card(self, case_id: UUID) -> ReviewCard | None:
        facts = await review.card_facts(self._pool, case_id)
        return card_from_facts(facts, self._settings.jira_url) if facts else None

    def edit_choices(self) -> tuple[dict[str, list[str]], list[str]]:
        categories = ({name: list(spec.subcategories) for name, spec in self._taxonomy.categories.items()}
                      if self._taxonomy else {})
        return categories, list(get_args(Priority))

    async def post_card(self, case_id: UUID) -> None:
        """Post the case's card to the review channel, or refresh it in place if it was posted.
        A Slack failure raises: the job is retried and the case stays in the queue meanwhile."""
        async with review.card_writer(self._pool, case_id) as conn:
            facts = await review.prepare_card(conn, case_id, self._settings.review_timeout_hours)
            if facts is None:
                return
            card = card_from_facts(facts, self._settings.jira_url)
            if facts.card_ts and facts.card_channel:
                try:
                    await self._client.chat_update(channel=facts.card_channel, ts=facts.card_ts,
                                                   blocks=review_card_blocks(card), text=card_fallback_text(card))
                    return
                except SlackApiError as exc:
                    # Someone deleted the card (or it was never real: `cx demo` records made-up ones):
                    # a case still waiting gets a new card rather than none.
                    if exc.response.get("error") not in ("message_not_found", "channel_not_found"):
                        raise
                    log.warning("review.card_gone", case_id=str(case_id), error=exc.response.get("error"))
            if not card.actionable:
                return
            earlier = await review.begin_card_post(conn, case_id)
            found = await self._posted_before(case_id) if earlier is not None else None
            if found is not None:
                # An earlier attempt posted the card and died before recording it: adopt and refresh it.
                channel, ts = found
                await review.record_card(conn, case_id, channel, ts)
                await self._client.chat_update(channel=channel, ts=ts, blocks=review_card_blocks(card),
                                               text=card_fallback_text(card))
                return
            posted = await self._client.chat_postMessage(
                channel=self._settings.slack_review_channel, blocks=review_card_blocks(card),
                text=card_fallback_text(card),
                metadata={"event_type": CARD_EVENT, "event_payload": {"case_id": str(case_id)}},
            )
            await review.record_card(conn, case_id, posted["channel"], posted["ts"])
        if self._alerts is not None:
            await self._alerts.refresh(case_id)  # a critical case's alert links its new card
        # The card shows the start of the message; the whole of it waits in the card's thread.
        full = mrkdwn.escape(facts.description)
        if len(full) > mrkdwn.SECTION_TEXT // 2:
            await self._client.chat_postMessage(channel=posted["channel"], thread_ts=posted["ts"],
                                                text=mrkdwn.truncate(full, THREAD_TEXT))

    async def _posted_before(self, case_id: UUID) -> tuple[str, str] | None:
        """(channel id, ts) of the case's card among the review channel's latest messages, posted by
        an attempt that died before recording it; None when that attempt did not reach Slack. One
        page: the attempt was that job's previous run, minutes ago, not hundreds of cards back."""
        channel = await channel_id(self._client, self._settings.slack_review_channel, setting="SLACK_REVIEW_CHANNEL")
        page = await self._client.conversations_history(channel=channel, include_all_metadata=True, limit=RECENT_CARDS)
        messages: list[dict[str, Any]] = page.get("messages", [])
        for message in messages:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == CARD_EVENT and metadata.get("event_payload", {}).get("case_id") == str(case_id):
                log.warning("review.card_adopted", case_id=str(case_id), ts=message["ts"])
                return channel, str(message["ts"])
        return None

    async def run_action(self, request: ActionRequest) -> None:
        """A reviewer's click: refused unless they are a reviewer; otherwise applied, the card (and
        the case's urgent alert, if it has one) refreshed, and a click that came second is told who
        acted first."""
        if not await self._reviewers.allows(request.reviewer):
            log.info("review.refused", reviewer=request.reviewer, case_id=str(request.case_id))
            await tell(self._client, channel=request.channel, user=request.reviewer, text=refusal_text(request.reviewer))
            return
        result = await review.apply(self._pool, self._sender, request, self._tracker)
        try:
            await self.post_card(request.case_id)
        except Exception:  # the click is applied: retrying this job would tell its author they lost
            log.warning("review.card_refresh_failed", case_id=str(request.case_id), exc_info=True)
            await review.queue_card(self._pool, request.case_id)
        if self._alerts is not None and result.done:
            await self._alerts.refresh(request.case_id)  # best effort, like the card's refresh
        if not result.done:
            if result.refused:
                text = mrkdwn.escape(result.refused)  # may quote an outside service's error text
            elif result.winner:
                text = lost_race_text(result.winner, result.winner_action or "acted on")
            else:
                text = no_longer_waiting_text(result.state)
            await tell(self._client, channel=request.channel, user=request.reviewer, text=text)
