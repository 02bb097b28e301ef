"""Past cases imported in bulk (`cx cases import --as-cases`): one batch of rows copied into a
temporary table, then customers, cases, their first interaction and labelled examples written
from it by a few set-based statements; and the vectors of imported cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import numpy as np

from db.connection import Connection


@dataclass(frozen=True)
class CaseRow:
    """One past case, checked and labelled, as the import stores it."""

    external_id: str
    received_at: datetime
    updated_at: datetime
    customer_email: str  # lower case
    customer_name: str | None
    subject: str | None
    description: str
    source_channel: str | None
    category: str | None
    subcategory: str | None
    priority: str | None
    status: str
    first_response_at: datetime | None
    resolved_at: datetime | None
    resolution_type: str | None
    csat: int | None
    error_codes: list[str]
    example_text: str  # what the triager would read: subject and description


@dataclass(frozen=True)
class BatchResult:
    created: int
    existing: int
    examples_added: int
    case_ids: list[UUID]  # every row's case, new or already there, in the batch's order


_COLUMNS = [f for f in CaseRow.__dataclass_fields__]

# ON COMMIT DROP: the table lives for one batch's transaction, so batches (and concurrent imports,
# each on its own connection) never see each other's rows.
_STAGE = """
CREATE TEMP TABLE case_import_rows (
    ordinal           integer GENERATED ALWAYS AS IDENTITY,
    external_id       text NOT NULL,
    received_at       timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    customer_email    text NOT NULL,
    customer_name     text,
    subject           text,
    description       text NOT NULL,
    source_channel    text,
    category          text,
    subcategory       text,
    priority          text,
    status            text NOT NULL,
    first_response_at timestamptz,
    resolved_at       timestamptz,
    resolution_type   text,
    csat              smallint,
    error_codes       text[] NOT NULL,
    example_text      text NOT NULL,
    case_id           uuid,
    created           boolean NOT NULL DEFAULT false
) ON COMMIT DROP
"""

# A case imported before (by an earlier run, or an interrupted one) is left exactly as it is:
# its rows are matched first and take no further part.
_KNOWN = """
UPDATE case_import_rows r SET case_id = c.case_id
FROM cases c
WHERE c.channel = 'import' AND c.external_id = r.external_id
"""

# One row per address (the first with a name gives it); a known customer only gains a name it lacked.
_CUSTOMERS = """
INSERT INTO customers (email, name, metadata)
SELECT DISTINCT ON (customer_email) customer_email, customer_name,
       jsonb_build_object('source', 'auto_created', 'channel', 'import')
FROM case_import_rows
WHERE case_id IS NULL
ORDER BY customer_email, customer_name IS NULL, ordinal
ON CONFLICT ((lower(email))) DO UPDATE SET name = EXCLUDED.name
WHERE customers.name IS NULL AND EXCLUDED.name IS NOT NULL
"""

# Oldest first, so short ids follow the order the cases arrived in. ON CONFLICT covers an import
# of the same file running at the same time: its cases are matched again below.
_CASES = """
WITH new AS (
    INSERT INTO cases (customer_id, channel, external_id, subject, description, category, subcategory, priority,
                       status, error_codes, first_response_at, resolved_at, resolution_type, csat,
                       created_at, updated_at, metadata)
    SELECT cu.customer_id, 'import', r.external_id, r.subject, r.description, r.category, r.subcategory, r.priority,
           r.status, r.error_codes, r.first_response_at, r.resolved_at, r.resolution_type, r.csat,
           r.received_at, r.updated_at,
           CASE WHEN r.source_channel IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('source_channel', r.source_channel) END
    FROM case_import_rows r
    JOIN customers cu ON lower(cu.email) = r.customer_email
    WHERE r.case_id IS NULL
    ORDER BY r.received_at, r.ordinal
    ON CONFLICT DO NOTHING
    RETURNING case_id, external_id
)
UPDATE case_import_rows r SET case_id = new.case_id, created = true
FROM new
WHERE r.external_id = new.external_id
"""

_INTERACTIONS = """
INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, metadata, created_at)
SELECT case_id, 'customer', customer_email, 'import', description,
       CASE WHEN source_channel IS NULL THEN '{}'::jsonb
            ELSE jsonb_build_object('source_channel', source_channel) END,
       received_at
FROM case_import_rows
WHERE created
"""

# The same dedupe as every other labelled history: one example per text and labels.
_EXAMPLES = """
WITH added AS (
    INSERT INTO labelled_examples (text, category, subcategory, priority, source, case_id)
    SELECT example_text, category, subcategory, priority, 'case', case_id
    FROM case_import_rows
    WHERE created AND category IS NOT NULL
    ORDER BY received_at, ordinal
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM added
"""

_RESULT = "SELECT case_id, created FROM case_import_rows ORDER BY ordinal"


async def store_batch(conn: Connection, rows: Sequence[CaseRow]) -> BatchResult:
    """Store one batch of past cases; call inside a transaction. Rows whose external_id is already
    a case of channel `import` change nothing."""
    await conn.execute(_STAGE)
    await conn.copy_records_to_table(
        "case_import_rows", columns=_COLUMNS,
        records=[tuple(getattr(row, column) for column in _COLUMNS) for row in rows],
    )
    await conn.execute(_KNOWN)
    await conn.execute(_CUSTOMERS)
    await conn.execute(_CASES)
    # Rows a concurrent import won are now committed and visible: match them as known.
    await conn.execute(_KNOWN + " AND r.case_id IS NULL")
    await conn.execute(_INTERACTIONS)
    examples = int(await conn.fetchval(_EXAMPLES))
    result = await conn.fetch(_RESULT)
    created = sum(1 for r in result if r["created"])
    return BatchResult(created=created, existing=len(result) - created, examples_added=examples,
                       case_ids=[r["case_id"] for r in result if r["case_id"] is not None])


async def count_unembedded(conn: Connection, case_ids: Sequence[UUID]) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM cases c WHERE c.case_id = ANY($1::uuid[]) "
        "AND NOT EXISTS (SELECT 1 FROM case_embeddings e WHERE e.case_id = c.case_id)",
        list(case_ids),
    ))


async def unembedded(conn: Connection, case_ids: Sequence[UUID]) -> list[tuple[UUID, str | None, str]]:
    """(case_id, subject, description) of those of `case_ids` that have no vector yet, oldest first."""
    rows = await conn.fetch(
        "SELECT c.case_id, c.subject, c.description FROM cases c WHERE c.case_id = ANY($1::uuid[]) "
        "AND NOT EXISTS (SELECT 1 FROM case_embeddings e WHERE e.case_id = c.case_id) "
        "ORDER BY c.created_at, c.short_id",
        list(case_ids),
    )
    return [(r["case_id"], r["subject"], r["description"]) for r in rows]


async def set_embeddings(conn: Connection, case_ids: Sequence[UUID], vectors: np.ndarray, model: str) -> None:
    """Store one vector per case; a case that already has one keeps it."""
    await conn.executemany(
        "INSERT INTO case_embeddings (case_id, embedding, model) VALUES ($1, $2, $3) ON CONFLICT (case_id) DO NOTHING",
        [(case_id, vector, model) for case_id, vector in zip(case_ids, list(vectors))],
    )
