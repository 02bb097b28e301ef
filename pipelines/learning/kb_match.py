"""How strongly the knowledge base answers a question, on an absolute scale, and a group of
questions' best match.

The knowledge-base search (db.kb.hybrid_search, as drafting runs it) finds a question's articles,
and the best of them is scored on an absolute scale. Not by the search's own score: that is a
reciprocal-rank fusion, which depends only on ranks (with full text alone the top article always
scores 1/(RRF_K + 1), whatever it says), so it cannot tell a good answer from the least bad one. Instead,
with embeddings, the cosine similarity of the question's vector to the article's best chunk; with
full text alone, the share of the question's words (weighted by IDF) that chunk contains
(db.kb_gaps.match_strengths).

A group's score is the median of its questions' best scores: a few off-topic cases in a cluster (or
a greeting-only message) move it less than a mean, and unlike a centroid it needs no embeddings, so
both search modes use one definition. Its best article is the one most of its questions matched best."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from db import embedding_space
from db import kb as kb_db
from db import kb_gaps as gaps_db
from pipelines.ports import Embedder
from pipelines.usage import failed_calls_recorded, record_usage

STEP = "kb_gaps"
# Articles the search returns per case; the best of them by strength is the case's best match.
SEARCH_K = 5
# Cases of a group that are searched (the newest): a median of 10 is steadier than the median of 5
# the threshold was calibrated on, and a large cluster should not cost a search per case (about
# 20 ms each with full text on the demo knowledge base, on a busy 2-core machine).
SAMPLE_CASES = 10
QUERY_CHARS = 2000  # as drafting cuts a case's text for its search

# "Weak" when no KB_GAP_MAX_SCORE is set, calibrated by bench/kb_gap_calibration.py: 3,075 BANKING77
# training questions (40 per intent, none from its test split) against samples/kb, the 24 intents
# the articles are filed under as "covered", the other 53 as not; groups of 5 questions of one
# intent scored by their median, as a gap is; the cut with the best balanced accuracy on half the
# questions, checked on the other half. Vector (cosine, all-MiniLM-L6-v2): group AUC 0.77, held-out
# balanced accuracy 0.70 (64% of covered groups strong, 76% of uncovered weak). Full text (IDF
# coverage): group AUC 0.63, held-out 0.56, a weak signal: run with embeddings for gap detection.
# The search's own fused score separates nothing (full text: AUC 0.50, always 1/(RRF_K + 1); hybrid: 0.63,
# held-out 0.51). Another embedding model has its own scale: set KB_GAP_MAX_SCORE.
WEAK_BELOW_VECTOR = 0.58
WEAK_BELOW_TEXT = 0.55


def weak_below(embedder: Embedder | None, max_score: float | None) -> float:
    """The score under which a group's best match is weak, in the scale of the search mode in use."""
    if max_score is not None:
        return max_score
    return WEAK_BELOW_VECTOR if embedder is not None else WEAK_BELOW_TEXT


@dataclass(frozen=True)
class Match:
    """A question's best article and how strongly it matches (None: no article found)."""

    article_id: UUID | None
    title: str | None
    score: float | None


async def best_matches(pool: asyncpg.Pool, embedder: Embedder | None, queries: Sequence[str]) -> list[Match]:
    """For each query, its best article among the search's top SEARCH_K, by match strength. The
    queries are embedded in one call; the searches are not logged, as they are no customer's."""
    texts = [q[:QUERY_CHARS] for q in queries]
    if not texts:
        return []
    vectors, usage = None, None
    if embedder is not None:
        async with failed_calls_recorded(pool, step=STEP):
            vectors, usage = await embedder.embed(texts)
    out: list[Match] = []
    async with pool.acquire() as conn:
        if embedder is not None and vectors is not None:
            await embedding_space.check(conn, embedder.provider, embedder.model, int(vectors.shape[1]))
        for i, text in enumerate(texts):
            vector = vectors[i] if vectors is not None else None
            hits = await kb_db.hybrid_search(conn, text, vector, SEARCH_K)
            strengths = await gaps_db.match_strengths(conn, text, vector, [h.chunk_id for h in hits])
            scored = [(strengths[h.chunk_id], h) for h in hits if h.chunk_id in strengths]
            if not scored:
                out.append(Match(None, None, None))
                continue
            score, hit = max(scored, key=lambda pair: pair[0])
            out.append(Match(hit.article_id, hit.title, score))
        await record_usage(conn, [usage], step=STEP)
    return out


def group_match(matches: Sequence[Match]) -> Match:
    """A group's best article (the one most of its cases matched best; ties: the higher score) and
    its score (the median of its cases' best scores; a case that found nothing counts as 0)."""
    found = [m for m in matches if m.article_id is not None]
    if not found:
        return Match(None, None, None)
    votes = Counter(m.article_id for m in found)
    top = max(found, key=lambda m: (votes[m.article_id], m.score or 0.0))
    return Match(top.article_id, top.title, statistics.median(m.score or 0.0 for m in matches))
