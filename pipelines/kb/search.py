"""Hybrid knowledge-base search (pgvector + full text, fused by reciprocal rank), logged."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from db import embedding_space
from db import kb as kb_db
from pipelines.ports import Embedder
from pipelines.usage import failed_calls_recorded, record_usage

Hit = kb_db.Hit


async def search(
    pool: asyncpg.Pool,
    embedder: Embedder | None,
    query: str,
    k: int = 5,
    *,
    category: str | None = None,
    tags: Sequence[str] | None = None,
    prefer_subcategory: str | None = None,
    origin: str = "pipeline",
    case_id: UUID | None = None,
) -> list[Hit]:
    """The k best articles; every search is logged (query, article ids, scores) for gap analysis."""
    vector, usage = None, None
    if embedder is not None:
        async with failed_calls_recorded(pool, step="kb_search", case_id=case_id):
            vectors, usage = await embedder.embed([query])
        vector = vectors[0]
    async with pool.acquire() as conn:
        if embedder is not None and vector is not None:
            await embedding_space.check(conn, embedder.provider, embedder.model, int(vector.shape[0]))
        hits = await kb_db.hybrid_search(conn, query, vector, k, category=category, tags=tags,
                                         prefer_subcategory=prefer_subcategory)
        await kb_db.log_search(conn, query, hits, origin=origin, case_id=case_id)
        await record_usage(conn, [usage], step="kb_search", case_id=case_id)
    return hits
