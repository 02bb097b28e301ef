"""Hybrid knowledge-base search (pgvector + full text, fused by reciprocal rank), logged."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from db import embedding_space
from db import kb as kb_db
from pipelines.ports import Embedder
from pipelines.triage.text_signals import detect_language
from pipelines.usage import failed_calls_recorded, record_usage

Hit = kb_db.Hit


def wants_multilingual(query: str) -> bool:
    """Whether a search for `query` adds the multilingual ranking: for a query not in English.
    English queries go without it: on the tune questions their recall did not improve with it (at
    some weights it fell), and it would cost each of them an embedding."""
    return detect_language(query) != "en"


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
    multilingual: Embedder | None = None,
) -> list[Hit]:
    """The k best articles; every search is logged (query, article ids, scores) for gap analysis.
    A `multilingual` embedder adds its ranking (db.kb.MULTILINGUAL_WEIGHT) for a query not in English."""
    vector, usage = None, None
    if embedder is not None:
        async with failed_calls_recorded(pool, step="kb_search", case_id=case_id):
            vectors, usage = await embedder.embed([query])
        vector = vectors[0]
    multilingual_vector, multilingual_usage = None, None
    if multilingual is not None and wants_multilingual(query):
        async with failed_calls_recorded(pool, step="kb_search", case_id=case_id):
            vectors, multilingual_usage = await multilingual.embed([query])
        multilingual_vector = vectors[0]
    async with pool.acquire() as conn:
        if embedder is not None and vector is not None:
            await embedding_space.check(conn, embedder.provider, embedder.model, int(vector.shape[0]))
        hits = await kb_db.hybrid_search(conn, query, vector, k, category=category, tags=tags,
                                         prefer_subcategory=prefer_subcategory, multilingual=multilingual_vector)
        await kb_db.log_search(conn, query, hits, origin=origin, case_id=case_id)
        await record_usage(conn, [usage, multilingual_usage], step="kb_search", case_id=case_id)
    return hits
