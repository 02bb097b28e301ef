"""Reading a case for triage and storing what triage decided."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class CaseForTriage:
    case_id: UUID
    short_id: int
    status: str
    channel: str
    subject: str | None
    description: str
    severity: str | None
    product: str | None
    customer_email: str
    tier: str
    earlier_cases: int


_LOAD = """
SELECT c.case_id, c.short_id, c.status, c.channel, c.subject, c.description, c.severity, c.product,
       cu.email AS customer_email, cu.account_tier AS tier,
       (SELECT count(*) FROM cases e WHERE e.customer_id = c.customer_id AND e.case_id <> c.case_id)
           AS earlier_cases
FROM cases c JOIN customers cu USING (customer_id)
WHERE c.case_id = $1
"""


async def load(conn: Connection, case_id: UUID, *, lock: bool = False) -> CaseForTriage | None:
    row = await conn.fetchrow(_LOAD + (" FOR UPDATE OF c" if lock else ""), case_id)
    return CaseForTriage(**dict(row)) if row else None


_SAVE = """
UPDATE cases SET
    category = $2, subcategory = $3, priority = $4, confidence_score = round($5::numeric, 3),
    sentiment = $6, language = $7, summary = $8, error_codes = $9, triage_reason = $10,
    triage_model = $11, prompt_version = $12,
    metadata = metadata || jsonb_build_object('triager', $13::text, 'route', $14::text, 'route_reason', $15::text),
    updated_at = now()
WHERE case_id = $1
"""


async def save(
    conn: Connection,
    case_id: UUID,
    *,
    category: str,
    subcategory: str | None,
    priority: str,
    confidence: float,
    sentiment: str,
    language: str,
    summary: str,
    error_codes: list[str],
    reason: str,
    model: str,
    prompt_version: str | None,
    triager: str,
    route: str,
    route_reason: str,
) -> None:
    await conn.execute(
        _SAVE, case_id, category, subcategory, priority, confidence, sentiment, language, summary,
        error_codes, reason, model, prompt_version, triager, route, route_reason,
    )


_SAVE_ROUTE = """
UPDATE cases SET
    triage_reason = $3,
    metadata = metadata || jsonb_build_object('route', $2::text, 'route_reason', $3::text),
    updated_at = now()
WHERE case_id = $1
"""


async def save_route(conn: Connection, case_id: UUID, *, route: str, reason: str) -> None:
    """A route without labels: no triager could answer, and `reason` says why."""
    await conn.execute(_SAVE_ROUTE, case_id, route, reason)
