"""Confluence → knowledge base: incremental by page version, removed pages archived."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from db import kb as kb_db
from db.pool import transaction
from pipelines.kb.documents import Article, ArticleMeta, html_to_text
from pipelines.kb.ingest import store_articles
from pipelines.ports import KnowledgeSource

SOURCE = "confluence"


@dataclass
class SyncReport:
    pages: int = 0
    changes: Counter[str] = field(default_factory=Counter)  # created / updated / unchanged
    archived: int = 0


async def sync_space(pool: asyncpg.Pool, source: KnowledgeSource, space_key: str) -> SyncReport:
    """Fetch the bodies of new and changed pages only (by version), store them, archive the rest."""
    pages = await source.list_pages(space_key)
    async with pool.acquire() as conn:
        known = await kb_db.versions(conn, SOURCE)
    report = SyncReport(pages=len(pages))
    for page in pages:
        source_id = f"{space_key}:{page.id}"
        if known.get(source_id) == page.version:
            report.changes["unchanged"] += 1
            continue
        html = await source.page_html(page.id)
        article = Article(SOURCE, source_id, ArticleMeta(title=page.title, tags=page.labels, url=page.url),
                          html_to_text(html))
        report.changes += await store_articles(pool, [article])
        async with pool.acquire() as conn:
            await kb_db.set_source_version(conn, SOURCE, source_id, page.version)
    async with transaction(pool) as conn:
        report.archived = await kb_db.archive_missing(
            conn, SOURCE, [f"{space_key}:{p.id}" for p in pages], prefix=f"{space_key}:"
        )
        if report.archived:
            await kb_db.refresh_statistics(conn)
    return report
