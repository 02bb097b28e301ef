"""Knowledge-base articles and chunks: upsert by content hash, embeddings, hybrid search, search log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import asyncpg
import numpy as np

Change = Literal["created", "updated", "unchanged"]

# Reciprocal-rank fusion constant (Cormack et al.): damps the head of each ranking so one list
# cannot dominate; 60 is the published default and nothing here argued for another value.
RRF_K = 60
# Each ranking contributes this many chunks per wanted result before fusion.
CANDIDATES_PER_RESULT = 8
# Full-text candidates: at most this many matches of the query's rarest words are ranked ...
TEXT_MATCH_BUDGET = 1000
# ... and the best of them by ts_rank are scored by BM25 (which reads every candidate's whole
# tsvector: the cost of a full-text search grows with this number).
TEXT_CANDIDATES = 100
# HNSW candidate list: pgvector's default of 40 gave recall@10 below 0.95 at 100k chunks.
EF_SEARCH = 100


@dataclass(frozen=True)
class ArticleRow:
    source: str
    source_id: str
    title: str
    body: str
    category: str | None
    subcategory: str | None
    tags: list[str]
    url: str | None
    content_hash: str
    status: str = "published"


@dataclass(frozen=True)
class ChunkRow:
    ordinal: int
    heading: str
    content: str
    token_count: int
    content_hash: str


async def upsert_article(conn: asyncpg.Connection, article: ArticleRow, chunks: Sequence[ChunkRow]) -> tuple[UUID, Change]:
    """Store an article and its chunks. Unchanged (same hash): nothing is written. Changed: chunks
    whose hash is unchanged keep their embedding, the others wait for one. Call in a transaction."""
    current = await conn.fetchrow(
        "SELECT article_id, content_hash, status FROM kb_articles WHERE source = $1 AND source_id = $2 FOR UPDATE",
        article.source, article.source_id,
    )
    if current is not None and current["content_hash"] == article.content_hash and current["status"] == article.status:
        return current["article_id"], "unchanged"
    article_id = await conn.fetchval(
        """
        INSERT INTO kb_articles (source, source_id, title, content, category, subcategory, tags, url, content_hash, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (source, source_id) DO UPDATE SET
            title = EXCLUDED.title, content = EXCLUDED.content, category = EXCLUDED.category,
            subcategory = EXCLUDED.subcategory, tags = EXCLUDED.tags, url = EXCLUDED.url,
            content_hash = EXCLUDED.content_hash, status = EXCLUDED.status, updated_at = now()
        RETURNING article_id
        """,
        article.source, article.source_id, article.title, article.body, article.category, article.subcategory,
        article.tags, article.url, article.content_hash, article.status,
    )
    old = await conn.fetch("DELETE FROM kb_chunks WHERE article_id = $1 RETURNING content_hash, embedding", article_id)
    kept = {r["content_hash"]: r["embedding"] for r in old if r["embedding"] is not None}
    await conn.executemany(
        """
        INSERT INTO kb_chunks (article_id, ordinal, heading, content, token_count, content_hash, embedding, title_terms)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        [(article_id, c.ordinal, c.heading, c.content, c.token_count, c.content_hash, kept.get(c.content_hash),
          " ".join([article.title, *article.tags]).replace("_", " ")) for c in chunks],
    )
    return article_id, "created" if current is None else "updated"


async def refresh_statistics(conn: asyncpg.Connection) -> None:
    """Recount document frequencies for full-text scoring; run after the articles changed."""
    await conn.execute("REFRESH MATERIALIZED VIEW kb_lexemes")
    await conn.execute("REFRESH MATERIALIZED VIEW kb_corpus")


async def archive_missing(
    conn: asyncpg.Connection, source: str, keep_source_ids: Sequence[str], *, prefix: str = ""
) -> int:
    """Archive the source's published articles (with ids under `prefix`) that are no longer in it."""
    result = await conn.execute(
        "UPDATE kb_articles SET status = 'archived', updated_at = now() "
        "WHERE source = $1 AND status = 'published' AND starts_with(source_id, $3) "
        "AND NOT (source_id = ANY($2::text[]))",
        source, list(keep_source_ids), prefix,
    )
    return int(result.split()[-1])


async def versions(conn: asyncpg.Connection, source: str) -> dict[str, int]:
    """source_id → the source's version number stored with each published article."""
    rows = await conn.fetch(
        "SELECT source_id, (metadata->>'version')::int AS version FROM kb_articles "
        "WHERE source = $1 AND status = 'published' AND metadata ? 'version'",
        source,
    )
    return {r["source_id"]: r["version"] for r in rows}


async def set_source_version(conn: asyncpg.Connection, source: str, source_id: str, version: int) -> None:
    await conn.execute(
        "UPDATE kb_articles SET metadata = metadata || jsonb_build_object('version', $3::int) "
        "WHERE source = $1 AND source_id = $2",
        source, source_id, version,
    )


async def unembedded_chunks(conn: asyncpg.Connection, limit: int) -> list[tuple[UUID, str]]:
    rows = await conn.fetch(
        "SELECT chunk_id, heading, content FROM kb_chunks WHERE embedding IS NULL ORDER BY article_id, ordinal LIMIT $1",
        limit,
    )
    return [(r["chunk_id"], f"{r['heading']}\n\n{r['content']}") for r in rows]


async def set_chunk_embeddings(conn: asyncpg.Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
    await conn.executemany(
        "UPDATE kb_chunks SET embedding = $2, updated_at = now() WHERE chunk_id = $1", list(zip(ids, list(vectors)))
    )


async def clear_embeddings(conn: asyncpg.Connection) -> int:
    """Forget every stored vector (knowledge base, labelled examples, cases) and the embedding
    space, so that the next run embeds everything with the configured model."""
    result = await conn.execute("UPDATE kb_chunks SET embedding = NULL WHERE embedding IS NOT NULL")
    await conn.execute("UPDATE labelled_examples SET embedding = NULL WHERE embedding IS NOT NULL")
    await conn.execute("DELETE FROM case_embeddings")
    await conn.execute("DELETE FROM embedding_space")
    return int(result.split()[-1])


@dataclass(frozen=True)
class Hit:
    article_id: UUID
    title: str
    url: str | None
    category: str | None
    subcategory: str | None
    chunk_id: UUID
    heading: str
    content: str
    snippet: str
    score: float
    vector_rank: int | None
    text_rank: int | None


def _vector_ranking(dims: int) -> str:
    # The cast to vector(dims) and the matching WHERE select the partial HNSW index for that dimension;
    # dims is an int from the embedder, never user text.
    return f"""
    vector_ranked AS (
        SELECT chunk_id, row_number() OVER (ORDER BY distance) AS rank
        FROM (
            SELECT c.chunk_id, c.embedding::vector({dims}) <=> $2::vector({dims}) AS distance
            FROM kb_chunks c JOIN kb_articles a USING (article_id)
            WHERE vector_dims(c.embedding) = {dims} AND a.status = 'published'
              AND ($4::text IS NULL OR a.category = $4) AND ($5::text[] IS NULL OR a.tags @> $5)
            ORDER BY distance
            LIMIT $3
        ) nearest
    ),"""


# Full text only: an empty vector ranking. It still names $2 (passed as NULL) so that every
# variant of the statement has the same parameters and Postgres can type each of them.
_NO_VECTOR = """
    vector_ranked AS (SELECT NULL::uuid AS chunk_id, NULL::bigint AS rank WHERE $2::text IS NULL AND false),"""

# Full text. A customer's question is long and mostly common words, and an OR of all of them
# matches most of a large knowledge base (measured: 220 ms a query at 100k chunks). So candidates
# come from the query's rarest words, as many as keep their matches within TEXT_MATCH_BUDGET
# (document frequencies from kb_lexemes), or from websearch_to_tsquery's strict AND when every
# word is common. Candidates are ordered by ts_rank over all the query's words, and the best are
# scored by BM25 (k1 1.2, b 0.75) with IDF from kb_lexemes: ts_rank knows no document frequency.
# Title and tag matches (weight A) count double, heading matches (B) half again; a chunk that
# matches the strict AND (with its "phrases" and -exclusions) gets a bonus.
_SEARCH = """
WITH query AS (
    SELECT websearch_to_tsquery('english', $1) AS strict,
           tsvector_to_array(to_tsvector('english', $1)) AS lexemes
),
loose AS (
    SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery AS q FROM query, unnest(query.lexemes) lexeme
),
rare AS (
    SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery AS q, count(*) AS words
    FROM (SELECT l.lexeme, sum(l.ndoc) OVER (ORDER BY l.ndoc, l.lexeme) AS running
          FROM kb_lexemes l, query WHERE l.lexeme = ANY(query.lexemes)) counted
    WHERE running <= {budget}
),
candidate_query AS (
    SELECT CASE WHEN rare.words > 0 THEN rare.q ELSE query.strict END AS q FROM rare, query
),
{vector}
-- Capped before ranking: when every query word is common, the strict AND can still match most
-- of the knowledge base (measured: 25k chunks, 259 ms, for "is on downgrade to and"), and such
-- words barely tell chunks apart anyway; the vector ranking carries those queries.
text_matches AS (
    SELECT c.chunk_id, c.article_id, c.tsv FROM kb_chunks c
    WHERE c.tsv @@ (SELECT q FROM candidate_query)
    LIMIT {budget}
),
text_candidates AS (
    SELECT m.chunk_id, m.tsv
    FROM text_matches m JOIN kb_articles a USING (article_id)
    WHERE a.status = 'published' AND ($4::text IS NULL OR a.category = $4) AND ($5::text[] IS NULL OR a.tags @> $5)
    ORDER BY ts_rank(m.tsv, (SELECT q FROM loose), 1) DESC
    LIMIT greatest($3::int, {text_candidates})
),
text_scored AS (
    SELECT t.chunk_id,
           sum(ln(1 + (n.chunks - coalesce(l.ndoc, 0) + 0.5) / (coalesce(l.ndoc, 0) + 0.5))
               * (CASE WHEN 'A' = ANY(e.weights) THEN 2.0 WHEN 'B' = ANY(e.weights) THEN 1.5 ELSE 1.0 END)
               * (cardinality(e.positions) * 2.2)
               / (cardinality(e.positions) + 1.2 * (0.25 + 0.75 * length(t.tsv) / n.avg_length)))
           + CASE WHEN bool_or(t.tsv @@ q.strict) THEN 1 ELSE 0 END AS score
    FROM text_candidates t
    CROSS JOIN LATERAL unnest(t.tsv) AS e
    CROSS JOIN query q
    CROSS JOIN (SELECT (SELECT greatest(chunks, 1) FROM kb_corpus) AS chunks,
                       (SELECT avg_length FROM kb_corpus) AS avg_length) n
    LEFT JOIN kb_lexemes l ON l.lexeme = e.lexeme
    WHERE e.lexeme = ANY(q.lexemes)
    GROUP BY t.chunk_id
),
text_ranked AS (
    SELECT chunk_id, row_number() OVER (ORDER BY score DESC, chunk_id) AS rank FROM text_scored
),
fused AS (
    SELECT chunk_id, sum(1.0 / ({rrf} + rank)) AS score, min(rank) FILTER (WHERE source = 'v') AS vector_rank,
           min(rank) FILTER (WHERE source = 't') AS text_rank
    FROM (SELECT chunk_id, rank, 'v' AS source FROM vector_ranked
          UNION ALL SELECT chunk_id, rank, 't' FROM text_ranked) ranked
    GROUP BY chunk_id
),
best AS (
    SELECT DISTINCT ON (c.article_id) c.article_id, c.chunk_id, c.heading, c.content, f.score, f.vector_rank, f.text_rank
    FROM fused f JOIN kb_chunks c USING (chunk_id)
    ORDER BY c.article_id, f.score DESC
)
SELECT b.article_id, b.chunk_id, b.heading, b.content, b.vector_rank, b.text_rank,
       -- The triaged subcategory, when given, is a third ranking in which the articles filed
       -- under it come first: it breaks near-ties the way the classifier already decided.
       b.score + CASE WHEN a.subcategory = $7 THEN 1.0 / ({rrf} + 1) ELSE 0 END AS score,
       a.title, a.url, a.category, a.subcategory,
       ts_headline('english', b.content, (SELECT q FROM loose),
                   'MaxWords=40, MinWords=20, MaxFragments=1, StartSel="", StopSel="", FragmentDelimiter=" … "')
           AS snippet
FROM best b JOIN kb_articles a USING (article_id)
ORDER BY score DESC, a.title
LIMIT $6
"""


async def hybrid_search(
    conn: asyncpg.Connection,
    query: str,
    vector: np.ndarray | None,
    k: int,
    *,
    category: str | None = None,
    tags: Sequence[str] | None = None,
    prefer_subcategory: str | None = None,
) -> list[Hit]:
    """The k best articles for `query`, each with its best chunk, by reciprocal-rank fusion of the
    vector ranking (HNSW), the full-text ranking and, for a triaged case, its subcategory.
    Without a vector, full text alone."""
    sql = _SEARCH.format(
        vector=_vector_ranking(int(vector.shape[0])) if vector is not None else _NO_VECTOR, rrf=RRF_K,
        text_candidates=TEXT_CANDIDATES, budget=TEXT_MATCH_BUDGET,
    )
    async with conn.transaction():
        # Filtered vector search keeps scanning the index until enough rows pass the filter
        # (pgvector 0.8 iterative scans) instead of returning fewer than asked for.
        # A custom plan per call: a generic one estimates the optional filters as selective and
        # skips the HNSW index for an exact scan of every chunk (measured: 0.5 s at 100k chunks).
        # Index probes priced as what they are on an SSD-backed, cached table: otherwise the
        # planner hashes every article to filter a few hundred chunks (12 of 20 ms at 100k).
        await conn.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}; SET LOCAL hnsw.iterative_scan = relaxed_order; "
                           "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL random_page_cost = 1.1")
        rows = await conn.fetch(
            sql, query, vector if vector is not None else None, k * CANDIDATES_PER_RESULT, category,
            list(tags) if tags else None, k, prefer_subcategory,
        )
    return [
        Hit(
            article_id=r["article_id"], title=r["title"], url=r["url"], category=r["category"],
            subcategory=r["subcategory"], chunk_id=r["chunk_id"], heading=r["heading"], content=r["content"],
            snippet=" ".join(r["snippet"].split()), score=float(r["score"]), vector_rank=r["vector_rank"],
            text_rank=r["text_rank"],
        )
        for r in rows
    ]


async def log_search(
    conn: asyncpg.Connection, query: str, hits: Sequence[Hit], *, origin: str, case_id: UUID | None = None
) -> UUID:
    results = [{"article_id": str(h.article_id), "chunk_id": str(h.chunk_id), "score": round(h.score, 5)} for h in hits]
    return await conn.fetchval(
        "INSERT INTO kb_searches (query, case_id, origin, top_score, results) VALUES ($1, $2, $3, $4, $5::jsonb) "
        "RETURNING search_id",
        query, case_id, origin, hits[0].score if hits else None, json.dumps(results),
    )


async def last_search_for_case(conn: asyncpg.Connection, case_id: UUID) -> list[tuple[str, str | None, float]]:
    """(title, url, fused score) of the articles the case's latest search returned, best first."""
    rows = await conn.fetch(
        """
        SELECT a.title, a.url, (r.value->>'score')::float8 AS score
        FROM (SELECT results FROM kb_searches WHERE case_id = $1 ORDER BY created_at DESC LIMIT 1) s,
             jsonb_array_elements(s.results) WITH ORDINALITY AS r(value, n)
             JOIN kb_articles a ON a.article_id = (r.value->>'article_id')::uuid
        ORDER BY r.n
        """,
        case_id,
    )
    return [(r["title"], r["url"], r["score"]) for r in rows]


async def counts(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """Published articles, their chunks, and chunks still waiting for an embedding."""
    row = await conn.fetchrow(
        """
        SELECT count(DISTINCT a.article_id) AS articles, count(c.chunk_id) AS chunks,
               count(c.chunk_id) FILTER (WHERE c.embedding IS NULL) AS unembedded
        FROM kb_articles a LEFT JOIN kb_chunks c USING (article_id) WHERE a.status = 'published'
        """
    )
    return row["articles"], row["chunks"], row["unembedded"]
