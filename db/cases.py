"""Case status changes: the one writer of cases.status, recording every move with its actor."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

import asyncpg

from db.connection import Connection


class CaseStatus(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    DRAFTING = "drafting"
    AWAITING_REVIEW = "awaiting_review"
    SENDING = "sending"
    REPLIED = "replied"
    RESOLVED = "resolved"
    CLOSED = "closed"
    HUMAN_OWNED = "human_owned"
    ESCALATED = "escalated"
    REOPENED = "reopened"


# A reviewer can act on a case in these states: its card and `/case` offer the review buttons.
REVIEWABLE = frozenset({CaseStatus.AWAITING_REVIEW, CaseStatus.HUMAN_OWNED})
# Nobody needs to act on these any more: lists of open cases leave them out.
DONE = frozenset({CaseStatus.RESOLVED, CaseStatus.CLOSED})
# A customer writing again to a case in one of these brings it back to a person.
REOPENED_BY_REPLY = frozenset({CaseStatus.REPLIED, CaseStatus.RESOLVED, CaseStatus.CLOSED})


class ActorType(StrEnum):
    SYSTEM = "system"
    AI = "ai"
    CUSTOMER = "customer"
    REVIEWER = "reviewer"
    AGENT = "agent"


class CaseNotFound(LookupError):
    def __init__(self, case_id: UUID) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


class InvalidTransition(ValueError):
    def __init__(self, case_id: UUID, current: str, wanted: str) -> None:
        super().__init__(f"case {case_id} cannot move from {current} to {wanted}")
        self.case_id, self.current, self.wanted = case_id, current, wanted


# The row lock makes concurrent moves of one case queue up; the EXISTS keeps an illegal move
# from reaching the trigger, whose exception would abort the caller's whole transaction.
_MOVE = """
WITH current AS (
    SELECT case_id, status FROM cases WHERE case_id = $1 FOR UPDATE
), moved AS (
    UPDATE cases SET
        status = $2,
        updated_at = now(),
        triaged_at = CASE WHEN $2 = 'triaged' THEN coalesce(cases.triaged_at, now()) ELSE cases.triaged_at END,
        resolved_at = CASE WHEN $2 = 'resolved' THEN now()
                           WHEN $2 = 'reopened' THEN NULL ELSE cases.resolved_at END,
        closed_at = CASE WHEN $2 = 'closed' THEN now()
                         WHEN $2 = 'reopened' THEN NULL ELSE cases.closed_at END,
        resolution_type = CASE WHEN $2 = 'reopened' THEN NULL ELSE cases.resolution_type END,
        escalated = cases.escalated OR $2 = 'escalated'
    FROM current
    WHERE cases.case_id = current.case_id
      AND EXISTS (SELECT 1 FROM case_status_transitions t
                  WHERE t.from_status = current.status AND t.to_status = $2)
    RETURNING cases.case_id
)
SELECT current.status AS previous, (SELECT count(*) FROM moved) AS moved FROM current
"""

# clock_timestamp, not now(): several moves in one transaction must keep their order.
_RECORD = """
INSERT INTO case_interactions
    (case_id, actor_type, actor_id, interaction_type, message, from_status, to_status, created_at)
VALUES ($1, $2, $3, 'status_change', $4, $5, $6, clock_timestamp())
"""


async def transition(
    conn: Connection,
    case_id: UUID,
    to: CaseStatus,
    *,
    actor_type: ActorType,
    actor_id: str,
    note: str | None = None,
) -> CaseStatus:
    """Move a case to `to` and log it; returns the previous status. Call inside a transaction."""
    row = await conn.fetchrow(_MOVE, case_id, to.value)
    if row is None:
        raise CaseNotFound(case_id)
    if not row["moved"]:
        raise InvalidTransition(case_id, row["previous"], to.value)
    await conn.execute(
        _RECORD, case_id, actor_type.value, actor_id, note, row["previous"], to.value
    )
    return CaseStatus(row["previous"])


async def allowed_transitions(conn: Connection) -> dict[CaseStatus, set[CaseStatus]]:
    allowed: dict[CaseStatus, set[CaseStatus]] = {}
    for row in await conn.fetch("SELECT from_status, to_status FROM case_status_transitions"):
        allowed.setdefault(CaseStatus(row["from_status"]), set()).add(CaseStatus(row["to_status"]))
    return allowed


_LIST = """
SELECT c.case_id, c.short_id, c.status, c.subject, c.category, c.subcategory, c.priority,
       c.confidence_score, c.metadata->>'route' AS route, c.metadata->>'route_reason' AS route_reason,
       cu.email AS customer_email
FROM cases c JOIN customers cu USING (customer_id)
ORDER BY c.short_id
LIMIT $1
"""


async def list_cases(conn: Connection, limit: int = 50) -> list[asyncpg.Record]:
    return await conn.fetch(_LIST, limit)


async def ids_in_status(conn: Connection, status: CaseStatus, limit: int = 1000) -> list[UUID]:
    rows = await conn.fetch("SELECT case_id FROM cases WHERE status = $1 ORDER BY short_id LIMIT $2", status.value, limit)
    return [r["case_id"] for r in rows]
