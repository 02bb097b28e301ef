"""Knowledge-base ingestion: articles in, chunks stored by content hash, missing embeddings filled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from db import kb as kb_db
from db.connection import Connection
from db.pool import transaction
from pipelines.embedding_backfill import backfill
from pipelines.kb.documents import Article, chunk, embedding_text
from pipelines.ports import Embedder

EMBED_BATCH = 256


@dataclass
class IngestReport:
    changes: Counter[str] = field(default_factory=Counter)  # created / updated / unchanged
    chunks_embedded: int = 0
    chunks_embedded_multilingual: int = 0


def _row(article: Article) -> kb_db.ArticleRow:
    meta = article.meta
    return kb_db.ArticleRow(
        source=article.source, source_id=article.source_id, title=meta.title, body=article.body,
        category=meta.category, subcategory=meta.subcategory, tags=meta.tags, url=meta.url,
        content_hash=article.content_hash,
    )


async def store_articles(
    pool: asyncpg.Pool, articles: Sequence[Article], progress: Callable[[int], None] | None = None
) -> Counter[str]:
    """Upsert each article with its chunks (one transaction per article); counts by change."""
    changes: Counter[str] = Counter()
    for article in articles:
        chunks = [kb_db.ChunkRow(c.ordinal, c.heading, c.content, c.token_count, c.content_hash)
                  for c in chunk(article)]
        async with transaction(pool) as conn:
            _, change = await kb_db.upsert_article(conn, _row(article), chunks)
        changes[change] += 1
        if progress is not None:
            progress(1)
    if changes["created"] or changes["updated"]:
        async with pool.acquire() as conn:
            await kb_db.refresh_statistics(conn)
    return changes


async def embed_pending(
    pool: asyncpg.Pool, embedder: Embedder, progress: Callable[[int], None] | None = None
) -> int:
    """Embed every chunk that has no vector yet; returns how many."""
    return await backfill(pool, embedder, _unembedded, kb_db.set_chunk_embeddings, batch=EMBED_BATCH,
                          step="kb_embed", progress=progress)


async def _unembedded(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
    return [(chunk_id, embedding_text(heading, content))
            for chunk_id, heading, content in await kb_db.unembedded_chunks(conn, limit)]


async def _unembedded_multilingual(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
    return [(chunk_id, embedding_text(heading, content))
            for chunk_id, heading, content in await kb_db.unembedded_multilingual_chunks(conn, limit)]


async def embed_pending_multilingual(
    pool: asyncpg.Pool, multilingual: Embedder, progress: Callable[[int], None] | None = None
) -> int:
    """Give every chunk that has none its multilingual vector, from the same text as its other
    vector; returns how many. Its own column, outside the deployment's embedding space."""
    return await backfill(pool, multilingual, _unembedded_multilingual, kb_db.set_multilingual_embeddings,
                          batch=EMBED_BATCH, step="kb_embed", progress=progress, deployment_space=False)


async def ingest(
    pool: asyncpg.Pool, articles: Sequence[Article], embedder: Embedder | None,
    progress: Callable[[int], None] | None = None, *, multilingual: Embedder | None = None,
) -> IngestReport:
    report = IngestReport(changes=await store_articles(pool, articles, progress))
    if embedder is not None:
        report.chunks_embedded = await embed_pending(pool, embedder)
    if multilingual is not None:
        report.chunks_embedded_multilingual = await embed_pending_multilingual(pool, multilingual)
    return report


async def reembed(
    pool: asyncpg.Pool, embedder: Embedder, progress: Callable[[int], None] | None = None, *,
    multilingual: Embedder | None = None,
) -> int:
    """Drop every stored vector and embed the knowledge base again with `embedder` (and its
    multilingual vectors with `multilingual`). Labelled examples are re-embedded at the next
    `cx triage train`."""
    async with transaction(pool) as conn:
        await kb_db.clear_embeddings(conn)
    done = await embed_pending(pool, embedder, progress)
    if multilingual is not None:
        await embed_pending_multilingual(pool, multilingual)
    return done
