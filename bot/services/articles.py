"""Drafted knowledge-base articles in Slack: post each draft to the metrics channel (or bring its
message up to date), and carry out a reviewer's Publish, Edit or Discard, refusing anyone outside
the reviewer group (the review cards' check) and telling a late clicker who decided first."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.messages import tell
from bot.slack.reviewers import ReviewerCheck
from db import article_drafts as drafts_db
from db import kb_gaps as gaps_db
from db.pool import transaction
from handlers.article_card import ArticleCard, article_blocks, article_text, decided_text, refusal_text
from handlers.services import ArticleService
from pipelines.jobs import ArticleActionRequest, JobName
from pipelines.learning import article_actions
from pipelines.ports import ArticlePages, Embedder
from pipelines.queue import queue_once

log = structlog.get_logger(__name__)

# The message is gone: a new one is posted rather than none.
_GONE = frozenset({"message_not_found", "channel_not_found"})


def confluence_pages(settings: Settings) -> ArticlePages | None:
    """Where Publish also creates the page: Confluence, when CONFLUENCE_URL, CONFLUENCE_EMAIL and
    CONFLUENCE_API_TOKEN are all set."""
    token = settings.secret("confluence_api_token")
    if settings.confluence_url is None or settings.confluence_email is None or token is None:
        return None
    from pipelines.adapters.confluence import ConfluenceClient

    return ConfluenceClient(settings.confluence_url, settings.confluence_email, token)


class SlackArticleService(ArticleService):
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient, settings: Settings, embedder: Embedder | None,
                 pages: ArticlePages | None = None, multilingual: Embedder | None = None) -> None:
        self._pool, self._client, self._settings = pool, client, settings
        self._embedder, self._pages, self._multilingual = embedder, pages, multilingual
        self._reviewers = ReviewerCheck(client, group=settings.slack_reviewer_group,
                                        channel=settings.slack_review_channel)

    async def submit(self, delivery_id: str, request: ArticleActionRequest) -> bool:
        return await queue_once(self._pool, delivery_id, JobName.ARTICLE_ACTION, request.payload())

    async def is_reviewer(self, user_id: str) -> bool:
        return await self._reviewers.allows(user_id)

    async def card(self, draft_id: UUID) -> ArticleCard | None:
        async with self._pool.acquire() as conn:
            draft = await drafts_db.load(conn, draft_id)
            gap = await gaps_db.gap(conn, draft.opportunity_id) if draft is not None else None
        if draft is None:
            return None
        return ArticleCard(
            draft_id=draft.draft_id, title=draft.title, summary=draft.summary, body=draft.body, tags=tuple(draft.tags),
            drafter=draft.drafter, model=draft.model, gap_title=gap.title if gap else draft.title,
            case_count=len(gap.case_ids) if gap else len(draft.case_ids),
            best_article=gap.best_article if gap else None, best_score=gap.best_score if gap else None,
            status=draft.status, edited_by=draft.edited_by, decided_by=draft.decided_by, decided_at=draft.decided_at,
            page_url=draft.confluence_url,
        )

    async def post_card(self, draft_id: UUID) -> None:
        """Post the draft to the metrics channel, or edit its message to match the draft. A Slack
        failure raises: the job is retried."""
        card = await self.card(draft_id)
        if card is None:
            log.warning("article.no_draft", draft_id=str(draft_id))
            return
        async with self._pool.acquire() as conn:
            draft = await drafts_db.load(conn, draft_id)
        assert draft is not None
        if draft.slack_channel and draft.slack_ts:
            try:
                await self._client.chat_update(channel=draft.slack_channel, ts=draft.slack_ts,
                                               blocks=article_blocks(card), text=article_text(card))
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in _GONE:
                    raise
                log.warning("article.message_gone", draft_id=str(draft_id))
        posted = await self._client.chat_postMessage(channel=self._settings.slack_metrics_channel,
                                                     blocks=article_blocks(card), text=article_text(card),
                                                     unfurl_links=False, unfurl_media=False)
        async with transaction(self._pool) as conn:
            await drafts_db.set_message(conn, draft_id, str(posted["channel"]), str(posted["ts"]))
        log.info("article.posted", draft_id=str(draft_id), channel=posted["channel"])

    async def run_action(self, request: ArticleActionRequest) -> None:
        """The ARTICLE_ACTION job: refused unless a reviewer clicked; otherwise applied, the message
        edited in place, and a click on a draft already decided is told who decided."""
        if not await self._reviewers.allows(request.reviewer):
            log.info("article.refused", reviewer=request.reviewer, draft_id=str(request.draft_id))
            await tell(self._client, channel=request.channel, user=request.reviewer, text=refusal_text(request.reviewer))
            return
        outcome = await article_actions.apply(self._pool, request, embedder=self._embedder, pages=self._pages,
                                              multilingual=self._multilingual,
                                              space_key=self._settings.confluence_space_key)
        log.info("article.action", action=request.action.value, reviewer=request.reviewer,
                 draft_id=str(request.draft_id), done=outcome.done, status=outcome.status)
        if outcome.status == "missing":
            return
        try:
            await self.post_card(request.draft_id)
        except Exception:  # the action is applied: retrying this job would tell its author they lost
            log.warning("article.refresh_failed", draft_id=str(request.draft_id), exc_info=True)
        if not outcome.done and outcome.status != "drafted":
            await tell(self._client, channel=request.channel, user=request.reviewer,
                       text=decided_text(outcome.status, outcome.decided_by, outcome.decided_at))
