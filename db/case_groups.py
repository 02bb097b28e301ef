"""What grouping recent cases reads: the cases of a period with their vectors, the ones still to
embed, and, without embeddings, the cases per triaged (category, subcategory)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import numpy as np

from db.connection import Connection
from db.detection import _matrix


@dataclass(frozen=True)
class PeriodCases:
    """The embedded cases of a period, newest first, one row of `vectors` each."""

    ids: list[UUID]
    categories: list[str | None]
    subcategories: list[str | None]
    vectors: np.ndarray


# Summary when triaged, else the subject, else the start of the text: one line, for a group's title.
_TITLE = "left(regexp_replace(coalesce(nullif(c.summary, ''), nullif(c.subject, ''), c.description), '\\s+', ' ', 'g'), 160)"


async def embedded_cases(conn: Connection, since: datetime, until: datetime, model: str,
                         categories: list[str] | None) -> PeriodCases:
    """The cases created in [since, until) with an embedding by `model`, in `categories` if given."""
    # Sorted here, not by the server: sorting the rows with their vectors spilled 360 MB to disk
    # at 230k cases.
    rows = await conn.fetch(
        """
        SELECT c.case_id, c.created_at, c.category, c.subcategory, vector_send(e.embedding) AS embedding
        FROM cases c JOIN case_embeddings e USING (case_id)
        WHERE c.created_at >= $1 AND c.created_at < $2 AND e.model = $3
          AND ($4::text[] IS NULL OR c.category = ANY($4::text[]))
        """,
        since, until, model, categories,
    )
    ids = [r["case_id"] for r in rows]
    newest_first = np.lexsort((np.array([i.bytes for i in ids], dtype="S16"),
                               -np.array([r["created_at"].timestamp() for r in rows])))
    order = newest_first.tolist()
    return PeriodCases(
        ids=[ids[i] for i in order], categories=[rows[i]["category"] for i in order],
        subcategories=[rows[i]["subcategory"] for i in order],
        vectors=_matrix([r["embedding"] for r in rows])[newest_first],
    )


async def case_titles(conn: Connection, case_ids: list[UUID]) -> dict[UUID, str]:
    """Each case's title: its summary when triaged, else its subject, else the start of its text, on one line."""
    rows = await conn.fetch(f"SELECT c.case_id, {_TITLE} AS title FROM cases c WHERE c.case_id = ANY($1::uuid[])",
                            case_ids)
    return {r["case_id"]: r["title"] for r in rows}


async def cases_without_vectors(conn: Connection, since: datetime, until: datetime, model: str,
                                categories: list[str] | None, limit: int) -> list[tuple[UUID, str]]:
    """(case id, text to embed) of the cases of [since, until) not yet embedded by `model`, with the
    text detection embeds (db.detection.cases_without_vectors), so both find the same vector."""
    rows = await conn.fetch(
        """
        SELECT c.case_id, left(coalesce(c.subject || E'\n', '') || c.description, 2000) AS text
        FROM cases c LEFT JOIN case_embeddings e ON e.case_id = c.case_id AND e.model = $3
        WHERE c.created_at >= $1 AND c.created_at < $2 AND e.case_id IS NULL
          AND ($4::text[] IS NULL OR c.category = ANY($4::text[]))
        ORDER BY c.created_at LIMIT $5
        """,
        since, until, model, categories, limit,
    )
    return [(r["case_id"], r["text"]) for r in rows]


@dataclass(frozen=True)
class CategoryGroup:
    category: str
    subcategory: str | None
    case_ids: list[UUID]  # newest first
    title: str  # the newest case's


async def category_groups(conn: Connection, since: datetime, until: datetime, categories: list[str] | None,
                          min_size: int) -> list[CategoryGroup]:
    """The triaged cases of [since, until) per (category, subcategory), groups of at least
    `min_size`, largest first."""
    rows = await conn.fetch(
        f"""
        SELECT c.category, c.subcategory,
               array_agg(c.case_id ORDER BY c.created_at DESC, c.case_id) AS case_ids,
               (array_agg({_TITLE} ORDER BY c.created_at DESC, c.case_id))[1] AS title
        FROM cases c
        WHERE c.created_at >= $1 AND c.created_at < $2 AND c.category IS NOT NULL
          AND ($3::text[] IS NULL OR c.category = ANY($3::text[]))
        GROUP BY c.category, c.subcategory
        HAVING count(*) >= $4
        ORDER BY count(*) DESC, max(c.created_at) DESC, c.category, c.subcategory
        """,
        since, until, categories, min_size,
    )
    return [CategoryGroup(r["category"], r["subcategory"], list(r["case_ids"]), r["title"]) for r in rows]

