"""Knowledge-base articles and chunks: upsert by content hash, embeddings, hybrid search, search log."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import numpy as np

from db.connection import Connection

Change = Literal["created", "updated", "unchanged"]

# Reciprocal-rank fusion constant (Cormack et al.): damps the head of each ranking so one list
# cannot dominate. The published 60 was set for TREC's lists of 1,000 documents; ours are the best 40
# chunks of each ranking, and a smaller constant lets a ranking's first places count for more. With
# `cx eval kb` on samples/kb-eval/tune.yaml (135 questions), hybrid recall@1 / recall@3 / MRR:
# 60: 0.689 / 0.844 / 0.778; 30: 0.689 / 0.867 / 0.786; 20: 0.711 / 0.859 / 0.797;
# 10: 0.719 / 0.859 / 0.802. At 10, MULTILINGUAL_WEIGHT and SECOND_CHUNK_WEIGHT were measured
# again and are still the best or tied.
RRF_K = 10
# Each ranking contributes this many chunks per wanted result before fusion.
CANDIDATES_PER_RESULT = 8
# The multilingual ranking (non-English queries only) counts this many times a ranking of its own:
# the English-only vector ranking and the full text mostly miss a German or French question's
# article, so the one ranking that understands it has to outweigh them. Measured with `cx eval kb`
# on samples/kb-eval/tune.yaml (14 German, 14 French of 135 questions; recall@1/@3, MiniLM):
#   without the ranking: German 0.14/0.57, French 0.36/0.57, all 0.593/0.785 (MRR 0.706)
#   weight 2:            German 0.57/0.79, French 0.43/0.71, all 0.644/0.822 (MRR 0.754)
#   weight 3:            German 0.71/0.79, French 0.50/0.79, all 0.667/0.830 (MRR 0.767)
#   weight 5:            German 0.57/0.86, French 0.57/0.79, all 0.659/0.837 (MRR 0.768)
# 3 and 5 tie on MRR; 3 has the better recall@1 and leans less on one ranking when the language
# was guessed wrong. English questions never use it (pipelines/kb/search.py).
MULTILINGUAL_WEIGHT = 3
# Full-text candidates: at most this many matches of the query's rarest words are ranked ...
TEXT_MATCH_BUDGET = 1000
# ... and the best of them by ts_rank are scored by BM25 (which reads every candidate's whole
# tsvector: the cost of a full-text search grows with this number).
TEXT_CANDIDATES = 100
# Set on every pooled connection (db.pool) when it opens, so that a search is one round trip.
SESSION_SETTINGS = {
    # HNSW candidate list: pgvector's default of 40 gave recall@10 below 0.95 at 100k chunks.
    "hnsw.ef_search": "100",
    # A filtered vector search keeps scanning the index until enough rows pass the filter
    # (pgvector 0.8 iterative scans) instead of returning fewer than asked for.
    "hnsw.iterative_scan": "relaxed_order",
    # Index probes priced as what they are on an SSD-backed, cached table: otherwise the planner
    # hashes every article to filter a few hundred chunks (12 of 20 ms at 100k).
    "random_page_cost": "1.1",
}


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


async def upsert_article(conn: Connection, article: ArticleRow, chunks: Sequence[ChunkRow]) -> tuple[UUID, Change]:
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
    old = await conn.fetch(
        "DELETE FROM kb_chunks WHERE article_id = $1 RETURNING content_hash, embedding, embedding_multilingual",
        article_id,
    )
    # Both vectors are computed from the chunk's heading and text, which its hash covers.
    kept = {r["content_hash"]: r["embedding"] for r in old if r["embedding"] is not None}
    kept_multilingual = {r["content_hash"]: r["embedding_multilingual"] for r in old
                         if r["embedding_multilingual"] is not None}
    await conn.executemany(
        """
        INSERT INTO kb_chunks (article_id, ordinal, heading, content, token_count, content_hash, embedding, title_terms,
                               embedding_multilingual)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        [(article_id, c.ordinal, c.heading, c.content, c.token_count, c.content_hash, kept.get(c.content_hash),
          " ".join([article.title, *article.tags]).replace("_", " "), kept_multilingual.get(c.content_hash))
         for c in chunks],
    )
    return article_id, "created" if current is None else "updated"


async def refresh_statistics(conn: Connection) -> None:
    """Recount document frequencies for full-text scoring; run after the articles changed."""
    await conn.execute("REFRESH MATERIALIZED VIEW kb_lexemes")
    await conn.execute("REFRESH MATERIALIZED VIEW kb_corpus")


async def archive_missing(
    conn: Connection, source: str, keep_source_ids: Sequence[str], *, prefix: str = ""
) -> int:
    """Archive the source's published articles (with ids under `prefix`) that are no longer in it."""
    result = await conn.execute(
        "UPDATE kb_articles SET status = 'archived', updated_at = now() "
        "WHERE source = $1 AND status = 'published' AND starts_with(source_id, $3) "
        "AND NOT (source_id = ANY($2::text[]))",
        source, list(keep_source_ids), prefix,
    )
    return int(result.split()[-1])


async def versions(conn: Connection, source: str) -> dict[str, int]:
    """source_id → the source's version number stored with each published article."""
    rows = await conn.fetch(
        "SELECT source_id, (metadata->>'version')::int AS version FROM kb_articles "
        "WHERE source = $1 AND status = 'published' AND metadata ? 'version'",
        source,
    )
    return {r["source_id"]: r["version"] for r in rows}


async def set_source_version(conn: Connection, source: str, source_id: str, version: int) -> None:
    await conn.execute(
        "UPDATE kb_articles SET metadata = metadata || jsonb_build_object('version', $3::int) "
        "WHERE source = $1 AND source_id = $2",
        source, source_id, version,
    )


async def unembedded_chunks(conn: Connection, limit: int) -> list[tuple[UUID, str, str]]:
    """(chunk_id, heading, content) of chunks that have no vector yet."""
    rows = await conn.fetch(
        "SELECT chunk_id, heading, content FROM kb_chunks WHERE embedding IS NULL ORDER BY article_id, ordinal LIMIT $1",
        limit,
    )
    return [(r["chunk_id"], r["heading"], r["content"]) for r in rows]


async def set_chunk_embeddings(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
    await conn.executemany(
        "UPDATE kb_chunks SET embedding = $2, updated_at = now() WHERE chunk_id = $1", list(zip(ids, list(vectors)))
    )


async def unembedded_multilingual_chunks(conn: Connection, limit: int) -> list[tuple[UUID, str, str]]:
    """(chunk_id, heading, content) of chunks that have no multilingual vector yet."""
    rows = await conn.fetch(
        "SELECT chunk_id, heading, content FROM kb_chunks WHERE embedding_multilingual IS NULL "
        "ORDER BY article_id, ordinal LIMIT $1",
        limit,
    )
    return [(r["chunk_id"], r["heading"], r["content"]) for r in rows]


async def set_multilingual_embeddings(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
    await conn.executemany(
        "UPDATE kb_chunks SET embedding_multilingual = $2, updated_at = now() WHERE chunk_id = $1",
        list(zip(ids, list(vectors))),
    )


async def clear_embeddings(conn: Connection) -> int:
    """Forget every stored vector (knowledge base, both kinds; labelled examples; cases) and the
    embedding space, so that the next run embeds everything with the configured model."""
    result = await conn.execute(
        "UPDATE kb_chunks SET embedding = NULL, embedding_multilingual = NULL "
        "WHERE embedding IS NOT NULL OR embedding_multilingual IS NOT NULL"
    )
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


SNIPPET_WORDS = 30


def snippet(content: str, lexemes: Sequence[str]) -> str:
    """About SNIPPET_WORDS words of the chunk around its densest run of query words. Words match on
    Postgres's English stems, which are prefixes of nearly every word they stem ('declin' of
    'declined'). Made here rather than by ts_headline, which parsed each result again (1.4 ms of
    a 10 ms search at 100k chunks)."""
    words = content.split()
    if len(words) <= SNIPPET_WORDS:
        return " ".join(words)
    stems = tuple(lexeme for lexeme in lexemes if len(lexeme) > 1)
    hits = [i for i, word in enumerate(words) if stems and word.lower().strip(_PUNCTUATION).startswith(stems)]
    starts = [max(0, min(h - 3, len(words) - SNIPPET_WORDS)) for h in hits] or [0]
    start = max(starts, key=lambda s: (sum(s <= h < s + SNIPPET_WORDS for h in hits), -s))
    end = start + SNIPPET_WORDS
    return ("… " if start else "") + " ".join(words[start:end]) + (" …" if end < len(words) else "")


_PUNCTUATION = "\"'()[]{}<>.,;:!?*_`~"


def _filters(category: str | None, tags: str | None) -> str:
    """The article filters a search was given, as SQL over `a` (kb_articles) and the parameters
    holding their values. Only those given: with optional filters (`$4 IS NULL OR ...`) in one
    statement, Postgres's generic plan took them as selective and skipped the HNSW index for an
    exact scan of every chunk (0.5 s at 100k chunks)."""
    return (f" AND a.category = {category}" if category else "") + (f" AND a.tags @> {tags}::text[]" if tags else "")


def vector_ranking(dims: int, vector: str, limit: str, filters: str) -> str:
    """The `vector_ranked` CTE: the `limit` chunks nearest to the `vector` parameter, ranked."""
    # The cast to vector(dims) and the matching WHERE select the partial HNSW index for that
    # dimension; dims is an int from the embedder, never user text.
    return f"""
    vector_ranked AS (
        SELECT chunk_id, article_id, row_number() OVER (ORDER BY distance) AS rank
        FROM (
            SELECT c.chunk_id, c.article_id, c.embedding::vector({dims}) <=> {vector}::vector({dims}) AS distance
            FROM kb_chunks c JOIN kb_articles a USING (article_id)
            WHERE vector_dims(c.embedding) = {dims} AND a.status = 'published'{filters}
            ORDER BY distance
            LIMIT {limit}
        ) nearest
    ),"""


def multilingual_ranking(vector: str, limit: str, filters: str) -> str:
    """The `multilingual_ranked` CTE: the `limit` chunks nearest to the `vector` parameter by their
    multilingual vectors, ranked as vector_ranking ranks."""
    return f"""
    multilingual_ranked AS (
        SELECT chunk_id, article_id, row_number() OVER (ORDER BY distance) AS rank
        FROM (
            SELECT c.chunk_id, c.article_id, c.embedding_multilingual <=> {vector}::vector AS distance
            FROM kb_chunks c JOIN kb_articles a USING (article_id)
            WHERE c.embedding_multilingual IS NOT NULL AND a.status = 'published'{filters}
            ORDER BY distance
            LIMIT {limit}
        ) nearest
    ),"""


_NO_VECTOR = """
    vector_ranked AS (SELECT NULL::uuid AS chunk_id, NULL::uuid AS article_id, NULL::bigint AS rank WHERE false),"""

# Full text. A customer's question is long and mostly common words, and an OR of all of them
# matches most of a large knowledge base (measured: 220 ms a query at 100k chunks). So candidates
# come from the query's rarest words, as many as keep their matches within TEXT_MATCH_BUDGET
# (document frequencies from kb_lexemes), or from websearch_to_tsquery's strict AND when every
# word is common. Candidates are ordered by ts_rank over all the query's words, and the best are
# scored by BM25 (k1 1.2, b 0.75) with IDF from kb_lexemes: ts_rank knows no document frequency.
# BM25's term frequency counts each occurrence by where it is: in the title or tags (weight A) 2,
# in a heading (B) 1.5, in the text 1. ts_rank_cd of a one-word query is exactly that sum (with
# weights halved, as they must lie in 0..1): one binary search into the tsvector, where unnesting
# each candidate's whole tsvector cost 3 of a 10 ms search.
# A chunk that matches the strict AND (with its "phrases" and -exclusions) gets a bonus.
_SEARCH = """
WITH query AS (
    SELECT websearch_to_tsquery('english', $1) AS strict,
           tsvector_to_array(to_tsvector('english', $1)) AS lexemes
),
loose AS (
    SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery AS q FROM query, unnest(query.lexemes) lexeme
),
terms AS MATERIALIZED (
    SELECT quote_literal(w.lexeme)::tsquery AS q,
           ln(1 + (n.chunks - coalesce(l.ndoc, 0) + 0.5::float8) / (coalesce(l.ndoc, 0) + 0.5::float8)) AS idf
    FROM query CROSS JOIN unnest(query.lexemes) AS w(lexeme) CROSS JOIN kb_corpus n
    LEFT JOIN kb_lexemes l ON l.lexeme = w.lexeme
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
    SELECT c.chunk_id, c.article_id, ts_rank(c.tsv, (SELECT q FROM loose), 1) AS rank FROM kb_chunks c
    WHERE c.tsv @@ (SELECT q FROM candidate_query)
    LIMIT {budget}
),
text_candidates AS (
    SELECT m.chunk_id, m.article_id
    FROM text_matches m JOIN kb_articles a USING (article_id)
    WHERE a.status = 'published'{filters}
    ORDER BY m.rank DESC
    LIMIT greatest($2::int, {text_candidates})
),
text_scored AS (
    SELECT tc.chunk_id, tc.article_id,
           sum(w.idf * w.tf * 2.2 / (w.tf + 1.2 * (0.25 + 0.75 * length(t.tsv) / n.avg_length)))
           + max(CASE WHEN t.tsv @@ q.strict THEN 1 ELSE 0 END) AS score
    FROM text_candidates tc CROSS JOIN kb_corpus n CROSS JOIN query q
    -- tsv read again, by key, for the few candidates (carried through the sort above, it was copied
    -- for all of them). OFFSET 0 keeps each lateral subquery a subquery: pulled up, the tsv lookup
    -- and ts_rank_cd were copied into every expression that used them and ran five times per
    -- candidate and term (p95 at 100k chunks 9.9 ms with the copies, 7.2 ms without, same results).
    CROSS JOIN LATERAL (SELECT c.tsv FROM kb_chunks c WHERE c.chunk_id = tc.chunk_id OFFSET 0) t
    CROSS JOIN LATERAL (SELECT terms.idf, 2 * ts_rank_cd('{{0.5, 0.5, 0.75, 1}}', t.tsv, terms.q, 0) AS tf
                        FROM terms OFFSET 0) w
    WHERE w.tf > 0
    GROUP BY tc.chunk_id, tc.article_id
),
text_ranked AS (
    SELECT chunk_id, article_id, row_number() OVER (ORDER BY score DESC, chunk_id) AS rank FROM text_scored
),
{fused}
best AS (
    SELECT DISTINCT ON (article_id) article_id, chunk_id,
           f.score + {second} * coalesce(f.second, 0) AS score, vector_rank, text_rank
    FROM (SELECT *, lead(score) OVER (PARTITION BY article_id ORDER BY score DESC) AS second FROM fused) f
    ORDER BY article_id, f.score DESC
),
top AS (
    SELECT b.article_id, b.chunk_id, b.vector_rank, b.text_rank,
           -- The triaged subcategory, when given, is a third ranking in which the articles filed
           -- under it come first: it breaks near-ties the way the classifier already decided.
           b.score + CASE WHEN a.subcategory = $4 THEN 1.0::float8 / ({rrf} + 1) ELSE 0 END AS score,
           a.title, a.url, a.category, a.subcategory
    FROM best b JOIN kb_articles a USING (article_id)
    ORDER BY score DESC, a.title
    LIMIT $3
)
-- Chunk text is read for the k results only.
SELECT t.*, c.heading, c.content, (SELECT lexemes FROM query) AS lexemes
FROM top t JOIN kb_chunks c USING (chunk_id)
ORDER BY t.score DESC, t.title
"""

# An article scores by its best chunk plus this share of its second best: an article that answers in
# two of its sections is likelier the one asked about than one that matches once. On the tune
# questions (135), hybrid recall@1 / @3: 0.667 / 0.830 alone; 0.689 / 0.837 at 0.15, 0.689 / 0.844 at
# 0.3, 0.667 / 0.844 at 0.4, 0.674 / 0.844 at 0.6, 0.659 / 0.830 at 1 (the two summed).
SECOND_CHUNK_WEIGHT = 0.3

_FUSED = """fused AS (
    SELECT chunk_id, article_id, sum(1.0::float8 / ({rrf} + rank)) AS score,
           min(rank) FILTER (WHERE source = 'v') AS vector_rank, min(rank) FILTER (WHERE source = 't') AS text_rank
    FROM (SELECT chunk_id, article_id, rank, 'v' AS source FROM vector_ranked
          UNION ALL SELECT chunk_id, article_id, rank, 't' FROM text_ranked) ranked
    GROUP BY chunk_id, article_id
),"""

_FUSED_MULTILINGUAL = """fused AS (
    SELECT chunk_id, article_id, sum(weight / ({rrf} + rank)) AS score,
           min(rank) FILTER (WHERE source = 'v') AS vector_rank, min(rank) FILTER (WHERE source = 't') AS text_rank
    FROM (SELECT chunk_id, article_id, rank, 'v' AS source, 1.0::float8 AS weight FROM vector_ranked
          UNION ALL SELECT chunk_id, article_id, rank, 't', 1.0::float8 FROM text_ranked
          UNION ALL SELECT chunk_id, article_id, rank, 'm', {weight}::float8 FROM multilingual_ranked) ranked
    GROUP BY chunk_id, article_id
),"""


@functools.cache
def search_statement(dims: int | None, *, category: bool, tags: bool, multilingual: bool = False) -> str:
    """The search statement for a vector of `dims` (None: full text only), with or without a
    multilingual vector, and the filters given. Parameters: $1 query text, $2 candidates per
    ranking, $3 k, $4 preferred subcategory, then the vector, the multilingual vector, the category
    and the tags, each only if there is one. Without a multilingual vector it is the statement the
    product ran before it had one (bench/kb_search.py measures that)."""
    params = iter(f"${n}" for n in itertools.count(5))
    vector = next(params) if dims else None
    multilingual_vector = next(params) if multilingual else None
    filters = _filters(next(params) if category else None, next(params) if tags else None)
    ranked = vector_ranking(dims, vector, "$2", filters) if dims and vector else _NO_VECTOR
    fused = _FUSED.format(rrf=RRF_K)
    if multilingual_vector:
        ranked += multilingual_ranking(multilingual_vector, "$2", filters)
        fused = _FUSED_MULTILINGUAL.format(rrf=RRF_K, weight=MULTILINGUAL_WEIGHT)
    return _SEARCH.format(
        vector=ranked, fused=fused, filters=filters, rrf=RRF_K, text_candidates=TEXT_CANDIDATES,
        budget=TEXT_MATCH_BUDGET, second=SECOND_CHUNK_WEIGHT,
    )


def search_call(
    query: str, vector: np.ndarray | None, k: int, *, category: str | None = None,
    tags: Sequence[str] | None = None, prefer_subcategory: str | None = None,
    multilingual: np.ndarray | None = None,
) -> tuple[str, list[object]]:
    """hybrid_search's statement and its arguments."""
    sql = search_statement(int(vector.shape[0]) if vector is not None else None, category=bool(category),
                           tags=bool(tags), multilingual=multilingual is not None)
    args = [query, k * CANDIDATES_PER_RESULT, k, prefer_subcategory]
    args += [a for a in (vector, multilingual, category, list(tags) if tags else None) if a is not None]
    return sql, args


async def hybrid_search(
    conn: Connection,
    query: str,
    vector: np.ndarray | None,
    k: int,
    *,
    category: str | None = None,
    tags: Sequence[str] | None = None,
    prefer_subcategory: str | None = None,
    multilingual: np.ndarray | None = None,
) -> list[Hit]:
    """The k best articles for `query`, each with its best chunk, by reciprocal-rank fusion of the
    vector ranking (HNSW), the full-text ranking, the multilingual vector ranking when a
    `multilingual` query vector is given (MULTILINGUAL_WEIGHT) and, for a triaged case, its
    subcategory. Without a vector, full text alone. Expects SESSION_SETTINGS on the connection."""
    sql, args = search_call(query, vector, k, category=category, tags=tags, prefer_subcategory=prefer_subcategory,
                            multilingual=multilingual)
    rows = await conn.fetch(sql, *args)
    return [
        Hit(
            article_id=r["article_id"], title=r["title"], url=r["url"], category=r["category"],
            subcategory=r["subcategory"], chunk_id=r["chunk_id"], heading=r["heading"], content=r["content"],
            snippet=snippet(r["content"], r["lexemes"]), score=float(r["score"]), vector_rank=r["vector_rank"],
            text_rank=r["text_rank"],
        )
        for r in rows
    ]


_VECTOR_SEARCH = """
WITH {vector}
best AS (
    SELECT DISTINCT ON (article_id) article_id, chunk_id, rank FROM vector_ranked ORDER BY article_id, rank
)
SELECT b.article_id, b.chunk_id, b.rank, a.title, a.url, a.category, a.subcategory, c.heading, c.content
FROM best b JOIN kb_articles a USING (article_id) JOIN kb_chunks c USING (chunk_id)
ORDER BY b.rank
LIMIT $3
"""


async def vector_search(conn: Connection, vector: np.ndarray, k: int) -> list[Hit]:
    """The k best articles by hybrid_search's vector ranking alone (same candidates), each by its
    nearest chunk, scored by what that ranking adds to the fusion. For measuring the vector leg."""
    dims = int(vector.shape[0])
    sql = _VECTOR_SEARCH.format(vector=vector_ranking(dims, "$1", "$2", ""))
    rows = await conn.fetch(sql, vector, k * CANDIDATES_PER_RESULT, k)
    return [
        Hit(
            article_id=r["article_id"], title=r["title"], url=r["url"], category=r["category"],
            subcategory=r["subcategory"], chunk_id=r["chunk_id"], heading=r["heading"], content=r["content"],
            snippet=snippet(r["content"], []), score=1.0 / (RRF_K + r["rank"]), vector_rank=r["rank"],
            text_rank=None,
        )
        for r in rows
    ]


async def source_ids(conn: Connection) -> dict[UUID, str]:
    """article_id -> source id of every published article."""
    rows = await conn.fetch("SELECT article_id, source_id FROM kb_articles WHERE status = 'published'")
    return {r["article_id"]: r["source_id"] for r in rows}


async def log_search(
    conn: Connection, query: str, hits: Sequence[Hit], *, origin: str, case_id: UUID | None = None
) -> UUID:
    results = [{"article_id": str(h.article_id), "chunk_id": str(h.chunk_id), "score": round(h.score, 5)} for h in hits]
    search_id: UUID = await conn.fetchval(
        "INSERT INTO kb_searches (query, case_id, origin, top_score, results) VALUES ($1, $2, $3, $4, $5::jsonb) "
        "RETURNING search_id",
        query, case_id, origin, hits[0].score if hits else None, json.dumps(results),
    )
    return search_id


async def last_search_for_case(conn: Connection, case_id: UUID) -> list[tuple[str, str | None, float]]:
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


async def counts(conn: Connection) -> tuple[int, int, int]:
    """Published articles, their chunks, and chunks still waiting for an embedding."""
    row = await conn.fetchrow(
        """
        SELECT count(DISTINCT a.article_id) AS articles, count(c.chunk_id) AS chunks,
               count(c.chunk_id) FILTER (WHERE c.embedding IS NULL) AS unembedded
        FROM kb_articles a LEFT JOIN kb_chunks c USING (article_id) WHERE a.status = 'published'
        """
    )
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return row["articles"], row["chunks"], row["unembedded"]
