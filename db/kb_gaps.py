"""KB gaps: how strongly an article's chunk matches a question, the texts of a group's cases, and the
kb_gap rows of improvement_opportunities (one open row per fingerprint)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np

from db.connection import Connection

# The share of a question's information (its words' BM25 IDF, from the published knowledge base)
# that a chunk contains. A word the knowledge base never uses weighs the most, so a question about
# something the articles never mention scores low however well its common words match.
_TEXT_STRENGTH = """
WITH words AS (
    SELECT q.lexeme,
           ln(1 + (n.chunks - coalesce(l.ndoc, 0) + 0.5::float8) / (coalesce(l.ndoc, 0) + 0.5::float8)) AS idf
    FROM (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', $1))) AS lexeme) q
    CROSS JOIN kb_corpus n LEFT JOIN kb_lexemes l ON l.lexeme = q.lexeme
)
SELECT c.chunk_id,
       coalesce(sum(w.idf) FILTER (WHERE c.tsv @@ quote_literal(w.lexeme)::tsquery) / nullif(sum(w.idf), 0), 0)
           AS strength
FROM kb_chunks c CROSS JOIN words w
WHERE c.chunk_id = ANY($2::uuid[])
GROUP BY c.chunk_id
"""

# Cosine similarity of the question's vector to the chunk's (both unit length).
_VECTOR_STRENGTH = """
SELECT chunk_id, 1 - (embedding <=> $1) AS strength
FROM kb_chunks WHERE chunk_id = ANY($2::uuid[]) AND embedding IS NOT NULL
"""


async def match_strengths(
    conn: Connection, query: str, vector: np.ndarray | None, chunk_ids: Sequence[UUID]
) -> dict[UUID, float]:
    """chunk_id → how strongly it matches: cosine similarity with a vector, else IDF coverage of the
    query's words. Chunks without an embedding are left out when a vector is given."""
    if vector is not None:
        rows = await conn.fetch(_VECTOR_STRENGTH, vector, list(chunk_ids))
    else:
        rows = await conn.fetch(_TEXT_STRENGTH, query, list(chunk_ids))
    return {r["chunk_id"]: float(r["strength"]) for r in rows}


@dataclass(frozen=True)
class CaseText:
    case_id: UUID
    subject: str | None
    description: str
    customer_name: str | None

    @property
    def query(self) -> str:
        """What the knowledge base is searched with, as drafting searches it for the case."""
        return f"{self.subject}\n{self.description}" if self.subject else self.description


async def case_texts(conn: Connection, case_ids: Sequence[UUID]) -> list[CaseText]:
    """The cases' subjects, descriptions and customers' names, in the order given."""
    rows = await conn.fetch(
        "SELECT c.case_id, c.subject, c.description, u.name FROM unnest($1::uuid[]) WITH ORDINALITY AS i(case_id, n) "
        "JOIN cases c USING (case_id) JOIN customers u USING (customer_id) ORDER BY i.n",
        list(case_ids),
    )
    return [CaseText(r["case_id"], r["subject"], r["description"] or "", r["name"]) for r in rows]


@dataclass(frozen=True)
class GapRow:
    opportunity_id: UUID
    created: bool  # first seen now, rather than found again


async def record_gap(
    conn: Connection, *, fingerprint: str, title: str, category: str | None, subcategory: str | None,
    case_ids: Sequence[UUID], article_id: UUID | None, best_article: str | None, best_score: float | None,
) -> GapRow:
    """Open a kb_gap opportunity, or update the open one with this fingerprint (its cases merged)."""
    meta = json.dumps({"best_article": best_article, "best_score": best_score})
    row = await conn.fetchrow(
        """
        INSERT INTO improvement_opportunities
            (opportunity_type, fingerprint, title, category, subcategory, frequency, case_ids, article_id, metadata)
        VALUES ('kb_gap', $1, $2, $3, $4, cardinality($5::uuid[]), $5, $6, $7::jsonb)
        ON CONFLICT (opportunity_type, fingerprint) WHERE status IN ('identified', 'in_progress') DO UPDATE SET
            title = EXCLUDED.title,
            case_ids = ARRAY(SELECT DISTINCT u FROM unnest(improvement_opportunities.case_ids || EXCLUDED.case_ids) u),
            frequency = cardinality(ARRAY(SELECT DISTINCT u FROM unnest(improvement_opportunities.case_ids
                                                                         || EXCLUDED.case_ids) u)),
            article_id = EXCLUDED.article_id,
            metadata = improvement_opportunities.metadata || EXCLUDED.metadata,
            last_detected_at = now(), updated_at = now()
        RETURNING opportunity_id, (xmax = 0) AS created
        """,
        fingerprint, title, category, subcategory, list(case_ids), article_id, meta,
    )
    assert row is not None  # an upsert always returns its row
    return GapRow(row["opportunity_id"], row["created"])


@dataclass(frozen=True)
class GapCases:
    opportunity_id: UUID
    title: str
    category: str | None
    subcategory: str | None
    case_ids: list[UUID]
    status: str
    best_article: str | None
    best_score: float | None


async def gap(conn: Connection, opportunity_id: UUID) -> GapCases | None:
    row = await conn.fetchrow(
        "SELECT opportunity_id, title, category, subcategory, case_ids, status, metadata->>'best_article' AS best, "
        "(metadata->>'best_score')::float8 AS best_score "
        "FROM improvement_opportunities "
        "WHERE opportunity_id = $1 AND opportunity_type = 'kb_gap'",
        opportunity_id,
    )
    if row is None:
        return None
    return GapCases(row["opportunity_id"], row["title"], row["category"], row["subcategory"], list(row["case_ids"]),
                    row["status"], row["best"], row["best_score"])


async def drafted(conn: Connection, fingerprint: str) -> bool:
    """Whether this gap has had a draft queued before: its row left `identified` (drafting,
    published or discarded), now or on an earlier day."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM improvement_opportunities WHERE opportunity_type = 'kb_gap' "
        "AND fingerprint = $1 AND status <> 'identified')",
        fingerprint,
    ))


async def set_status(conn: Connection, opportunity_id: UUID, status: str, article_id: UUID | None = None) -> None:
    await conn.execute(
        "UPDATE improvement_opportunities SET status = $2, article_id = coalesce($3, article_id), updated_at = now() "
        "WHERE opportunity_id = $1",
        opportunity_id, status, article_id,
    )


@dataclass(frozen=True)
class ResolvedCase:
    case_id: UUID
    subject: str | None
    description: str
    customer_name: str | None
    customer_email: str
    reply: str | None  # the last reply that went out on the case, if any

    @property
    def query(self) -> str:
        return f"{self.subject}\n{self.description}" if self.subject else self.description


async def resolved_cases(conn: Connection, case_ids: Sequence[UUID], limit: int) -> list[ResolvedCase]:
    """The cases with the reply that answered each (the latest sent), those with a reply first."""
    rows = await conn.fetch(
        """
        SELECT c.case_id, c.subject, c.description, u.name, u.email, r.body AS reply
        FROM cases c JOIN customers u USING (customer_id)
        LEFT JOIN LATERAL (SELECT o.body FROM reply_outbox o WHERE o.case_id = c.case_id AND o.status = 'sent'
                           ORDER BY o.sent_at DESC NULLS LAST LIMIT 1) r ON true
        WHERE c.case_id = ANY($1::uuid[]) AND NOT c.metadata ? 'erased_at'
        ORDER BY (r.body IS NULL), c.created_at DESC
        LIMIT $2
        """,
        list(case_ids), limit,
    )
    return [ResolvedCase(r["case_id"], r["subject"], r["description"] or "", r["name"], r["email"], r["reply"])
            for r in rows]
