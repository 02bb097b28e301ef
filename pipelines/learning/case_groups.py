"""Groups of similar recent cases, for the daily learning steps (KB gaps, defect bugs).

With an embedder, a group is a similarity cluster of the cases created in [since, until): cases
without a vector are embedded first (the text detection embeds), then greedy leader clustering
(pipelines/learning/leader_clusters.py) at the embedding model's own paraphrase threshold, the one
detection uses, unless `similarity` is given. Without an embedder, or when no case of the period has
a vector, a group is the cases triaged into one (category, subcategory).

    groups = await group_recent_cases(pool, embedder, since=until - timedelta(days=7), until=until,
                                      min_size=3, categories=frozenset({"defect"}))

Groups come largest first; each lists its case ids newest first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

import asyncpg
import numpy as np
import structlog

from db import case_groups as db
from db import case_import as case_import_db
from db.connection import Connection
from pipelines.detection.clusters import similarity_for
from pipelines.embedding_backfill import backfill
from pipelines.learning.leader_clusters import leader_clusters
from pipelines.ports import Embedder

log = structlog.get_logger(__name__)

_EMBED_BATCH = 256
_EMBED_MAX = 50_000  # per call: detection embeds cases as they come, so this is a backlog's bound


@dataclass(frozen=True)
class CaseGroup:
    case_ids: tuple[UUID, ...]  # newest first
    category: str | None  # the most common among its cases
    subcategory: str | None  # the most common among its cases of that category
    title: str  # a representative case's summary or subject, one line
    centroid: np.ndarray | None  # unit vector when embeddings were used


async def group_recent_cases(pool: asyncpg.Pool, embedder: Embedder | None, *, since: datetime, until: datetime,
                             min_size: int, categories: frozenset[str] | None = None,
                             similarity: float | None = None) -> list[CaseGroup]:
    """Groups of at least `min_size` similar cases created in [since, until), largest first;
    `categories` keeps only cases triaged into one of them."""
    wanted = sorted(categories) if categories is not None else None
    if embedder is not None:
        await _embed_missing(pool, embedder, since, until, wanted)
        async with pool.acquire() as conn:
            cases = await db.embedded_cases(conn, since, until, embedder.model, wanted)
        if cases.ids:
            threshold = similarity if similarity is not None else similarity_for(embedder.model)
            found = _similarity_groups(cases, threshold, min_size)
            async with pool.acquire() as conn:
                titles = await db.case_titles(conn, [central for _, central in found])
            return [replace(group, title=titles.get(central, "")) for group, central in found]
        log.info("case_groups.no_vectors", since=since.isoformat(), until=until.isoformat())
    async with pool.acquire() as conn:
        rows = await db.category_groups(conn, since, until, wanted, min_size)
    return [CaseGroup(tuple(r.case_ids), r.category, r.subcategory, r.title, None) for r in rows]


def _similarity_groups(cases: db.PeriodCases, similarity: float, min_size: int) -> list[tuple[CaseGroup, UUID]]:
    """The groups, untitled, each with the case whose title it takes."""
    groups = []
    for members in leader_clusters(cases.vectors, similarity=similarity, min_size=min_size):
        rows = members.tolist()
        centroid = cases.vectors[members].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        category = _most_common([cases.categories[i] for i in rows])
        typical = [i for i in rows if cases.categories[i] == category]
        subcategory = _most_common([cases.subcategories[i] for i in typical])
        # The title is the case closest to the centre among those of the group's category.
        central = typical[int(np.argmax(cases.vectors[typical] @ centroid))]
        groups.append((CaseGroup(tuple(cases.ids[i] for i in rows), category, subcategory, "",
                                 centroid.astype(np.float32)), cases.ids[central]))
    return groups


def _most_common(values: Sequence[str | None]) -> str | None:
    """The most frequent non-null value; among equals, the one of the newest case."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


async def _embed_missing(pool: asyncpg.Pool, embedder: Embedder, since: datetime, until: datetime,
                         categories: list[str] | None) -> int:
    done = 0

    async def pending(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
        nonlocal done
        if done >= _EMBED_MAX:
            return []
        todo = await db.cases_without_vectors(conn, since, until, embedder.model, categories,
                                              min(limit, _EMBED_MAX - done))
        done += len(todo)
        return todo

    async def store(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
        await case_import_db.set_embeddings(conn, ids, vectors, embedder.model)

    return await backfill(pool, embedder, pending, store, batch=_EMBED_BATCH, step="case_embed")
