"""Labelled examples for the local triager: imported history, reviewer corrections, resolved cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import numpy as np

from db.connection import Connection


async def add_examples(
    conn: Connection,
    rows: Sequence[tuple[str, str, str | None, str | None]],
    *,
    source: str,
    case_id: UUID | None = None,
) -> int:
    """Insert (text, category, subcategory, priority) rows; returns how many were new."""
    inserted = await conn.fetchval(
        """
        WITH new AS (
            INSERT INTO labelled_examples (text, category, subcategory, priority, source, case_id)
            SELECT t, c, s, p, $5, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(t, c, s, p)
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM new
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        source,
        case_id,
    )
    return int(inserted)


async def missing_embeddings(conn: Connection, limit: int = 5000) -> list[tuple[UUID, str]]:
    rows = await conn.fetch(
        "SELECT example_id, text FROM labelled_examples WHERE embedding IS NULL ORDER BY created_at LIMIT $1", limit
    )
    return [(r["example_id"], r["text"]) for r in rows]


async def set_embeddings(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
    await conn.executemany(
        "UPDATE labelled_examples SET embedding = $2 WHERE example_id = $1",
        list(zip(ids, list(vectors))),
    )


async def nearest(conn: Connection, vector: np.ndarray, k: int) -> list[tuple[str, str | None, float, str]]:
    """The k labelled examples closest to `vector` (cosine), as (category, subcategory, similarity, text)."""
    dims = int(vector.shape[0])
    # The cast to vector(dims) and the matching WHERE let the planner use the partial HNSW index.
    rows = await conn.fetch(
        f"""
        SELECT category, subcategory, 1 - (embedding::vector({dims}) <=> $1::vector({dims})) AS similarity, text
        FROM labelled_examples
        WHERE vector_dims(embedding) = {dims}
        ORDER BY embedding::vector({dims}) <=> $1::vector({dims})
        LIMIT $2
        """,
        vector,
        k,
    )
    return [(r["category"], r["subcategory"], float(r["similarity"]), r["text"]) for r in rows]


@dataclass(frozen=True)
class EmbeddedExample:
    text: str
    category: str
    subcategory: str | None
    embedding: np.ndarray | None
    created_at: datetime


async def examples_since(conn: Connection, since: object, limit: int = 10_000) -> list[EmbeddedExample]:
    """Examples created after `since`, oldest first (what a loaded model has not seen yet)."""
    rows = await conn.fetch(
        "SELECT text, category, subcategory, embedding, created_at FROM labelled_examples "
        "WHERE created_at > $1 ORDER BY created_at LIMIT $2",
        since,
        limit,
    )
    return [_embedded(r) for r in rows]


def _embedded(row: asyncpg.Record) -> EmbeddedExample:
    vector = row["embedding"]
    return EmbeddedExample(
        text=row["text"],
        category=row["category"],
        subcategory=row["subcategory"],
        embedding=None if vector is None else np.asarray(vector.to_numpy(), dtype=np.float32),
        created_at=row["created_at"],
    )


async def training_set(conn: Connection) -> tuple[list[EmbeddedExample], datetime]:
    """Every example, and the instant they were read at (the model's `examples_until`)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        until: datetime = await conn.fetchval("SELECT now()")
        rows = await conn.fetch(
            "SELECT text, category, subcategory, embedding, created_at FROM labelled_examples ORDER BY created_at"
        )
    return [_embedded(r) for r in rows], until


@dataclass(frozen=True)
class UnlabelledCase:
    case_id: UUID
    subject: str | None
    description: str
    embedding: np.ndarray | None  # the case's vector by the embedder asked about, if it has one


async def unlabelled_cases(conn: Connection, embedding_model: str | None, limit: int) -> list[UnlabelledCase]:
    """The newest `limit` cases no labelled example comes from: live cases the model triaged itself
    and past cases imported without labels (an erased case's message is cleared: not among them)."""
    rows = await conn.fetch(
        """
        SELECT c.case_id, c.subject, c.description, e.embedding
        FROM cases c
        LEFT JOIN case_embeddings e ON e.case_id = c.case_id AND e.model = $1
        WHERE c.description <> ''
          AND NOT EXISTS (SELECT 1 FROM labelled_examples l WHERE l.case_id = c.case_id)
        ORDER BY c.created_at DESC
        LIMIT $2
        """,
        embedding_model,
        limit,
    )
    return [
        UnlabelledCase(r["case_id"], r["subject"], r["description"],
                       None if r["embedding"] is None else np.asarray(r["embedding"].to_numpy(), dtype=np.float32))
        for r in rows
    ]
