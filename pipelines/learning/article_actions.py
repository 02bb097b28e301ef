"""A reviewer's Publish, Edit or Discard on a drafted article. The click is queued before Slack's ack
(a redelivered one is dropped), then applied in the ARTICLE_ACTION job: one decision per draft, the
second click learns who decided first.

Publish stores the article in the knowledge base as `generated`, validated by the reviewer (their
Slack id and the time), chunked and its statistics refreshed in one go so that full-text search
finds it at once, then embedded so that vector search does too. With Confluence configured the page
is created there first and its id recorded, so a retried Publish finds it instead of creating
another. The whole publish holds an advisory lock on the draft: two workers never publish it twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import structlog

from db import article_drafts as drafts_db
from db import kb as kb_db
from db import kb_gaps as gaps_db
from db.locks import advisory_lock
from db.pool import transaction
from pipelines.jobs import ArticleAction, ArticleActionRequest
from pipelines.kb.documents import Article, ArticleMeta, chunk
from pipelines.kb.ingest import embed_pending, embed_pending_multilingual
from pipelines.learning.article_html import storage_html
from pipelines.ports import ArticlePages, Embedder

log = structlog.get_logger(__name__)

SOURCE = "generated"
LOCK_WAIT_SECONDS = 120.0  # another worker publishing the same draft (Confluence, embeddings)


@dataclass(frozen=True)
class ArticleOutcome:
    done: bool  # the action took effect
    status: str  # the draft's status afterwards: drafted | published | discarded | missing
    decided_by: str | None = None  # who published or discarded it, when it was decided
    decided_at: datetime | None = None
    article_id: UUID | None = None



async def apply(pool: asyncpg.Pool, request: ArticleActionRequest, *, embedder: Embedder | None,
                pages: ArticlePages | None, space_key: str, multilingual: Embedder | None = None) -> ArticleOutcome:
    if request.action is ArticleAction.PUBLISH:
        return await publish(pool, request.draft_id, request.reviewer, embedder=embedder, pages=pages,
                             space_key=space_key, multilingual=multilingual)
    if request.action is ArticleAction.DISCARD:
        return await discard(pool, request.draft_id, request.reviewer)
    return await edit(pool, request.draft_id, request.reviewer, title=request.title or "", body=request.body or "")


async def _embed(pool: asyncpg.Pool, embedder: Embedder | None, multilingual: Embedder | None) -> None:
    """The published article's chunks get their vectors: the deployment's and the multilingual one."""
    if embedder is not None:
        await embed_pending(pool, embedder)
    if multilingual is not None:
        await embed_pending_multilingual(pool, multilingual)


def _as_is(draft: drafts_db.DraftRow | None) -> ArticleOutcome:
    if draft is None:
        return ArticleOutcome(done=False, status="missing")
    return ArticleOutcome(done=False, status=draft.status, decided_by=draft.decided_by, decided_at=draft.decided_at,
                          article_id=draft.article_id)


async def publish(pool: asyncpg.Pool, draft_id: UUID, reviewer: str, *, embedder: Embedder | None,
                  pages: ArticlePages | None, space_key: str, multilingual: Embedder | None = None) -> ArticleOutcome:
    async with advisory_lock(pool, f"article_draft:{draft_id}", wait=LOCK_WAIT_SECONDS) as conn:
        draft = await drafts_db.load(conn, draft_id)
        if draft is None or draft.status != "drafted":
            if draft is not None and draft.status == "published":
                await _embed(pool, embedder, multilingual)  # a retried publish that failed while embedding
            return _as_is(draft)
        url = draft.confluence_url
        if pages is not None and draft.confluence_page_id is None:
            page = await pages.create_page(space_key, draft.title, storage_html(draft.body))
            await drafts_db.set_confluence_page(conn, draft_id, page.id, page.url)
            url = page.url
        article = Article(SOURCE, f"article_draft:{draft_id}", ArticleMeta(
            title=draft.title, category=draft.category, subcategory=draft.subcategory, tags=draft.tags, url=url,
        ), draft.body)
        chunks = [kb_db.ChunkRow(c.ordinal, c.heading, c.content, c.token_count, c.content_hash)
                  for c in chunk(article)]
        row = kb_db.ArticleRow(
            source=SOURCE, source_id=article.source_id, title=draft.title, body=draft.body, category=draft.category,
            subcategory=draft.subcategory, tags=draft.tags, url=url, content_hash=article.content_hash,
        )
        async with conn.transaction():
            article_id, _ = await kb_db.upsert_article(conn, row, chunks)
            await drafts_db.stamp_validated(conn, article_id, reviewer=reviewer, meta={
                "draft_id": str(draft_id), "opportunity_id": str(draft.opportunity_id), "drafter": draft.drafter,
                "confluence_page_id": draft.confluence_page_id,
            })
            decided = await drafts_db.decide(conn, draft_id, status="published", reviewer=reviewer,
                                             article_id=article_id)
            assert decided  # the lock and the status read under it: nobody else decided meanwhile
            await gaps_db.set_status(conn, draft.opportunity_id, "resolved", article_id)
        await kb_db.refresh_statistics(conn)
        published = await drafts_db.load(conn, draft_id)
    await _embed(pool, embedder, multilingual)
    log.info("article.published", draft_id=str(draft_id), article_id=str(article_id), reviewer=reviewer,
             confluence=url is not None)
    assert published is not None
    return ArticleOutcome(done=True, status="published", decided_by=reviewer, decided_at=published.decided_at,
                          article_id=article_id)


async def discard(pool: asyncpg.Pool, draft_id: UUID, reviewer: str) -> ArticleOutcome:
    async with transaction(pool) as conn:
        draft = await drafts_db.load(conn, draft_id, lock=True)
        if draft is None or not await drafts_db.decide(conn, draft_id, status="discarded", reviewer=reviewer):
            return _as_is(draft)
        # Dismissed, the gap is not drafted again (kb_gaps_step skips fingerprints once drafted).
        await gaps_db.set_status(conn, draft.opportunity_id, "dismissed")
        decided = await drafts_db.load(conn, draft_id)
    assert decided is not None
    log.info("article.discarded", draft_id=str(draft_id), reviewer=reviewer)
    return ArticleOutcome(done=True, status="discarded", decided_by=reviewer, decided_at=decided.decided_at)


async def edit(pool: asyncpg.Pool, draft_id: UUID, reviewer: str, *, title: str, body: str) -> ArticleOutcome:
    """The Edit modal's text replaces the draft's, while it is still undecided."""
    title, body = " ".join(title.split()), body.strip()
    async with transaction(pool) as conn:
        draft = await drafts_db.load(conn, draft_id, lock=True)
        if draft is None or not title or not body:
            return _as_is(draft)
        if not await drafts_db.edit(conn, draft_id, title=title, body=body, editor=reviewer):
            return _as_is(draft)
    log.info("article.edited", draft_id=str(draft_id), reviewer=reviewer)
    return ArticleOutcome(done=True, status="drafted")
