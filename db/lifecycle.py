"""The end of a case: resolving it (by a reviewer, or after the customer's silence) with its
resolution type, finding the replied cases gone quiet, and storing the customer's CSAT score."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from db.cases import ActorType, CaseStatus, transition
from db.connection import Connection

# A reviewer may mark a case resolved in these states (each has a move to `resolved` in 0005).
RESOLVABLE = frozenset({CaseStatus.REPLIED, CaseStatus.HUMAN_OWNED, CaseStatus.ESCALATED})

# The resolution type: how the case was answered, from what happened; the first rule that holds wins.
#   escalated     the case was escalated (to Jira) at some point: cases.escalated.
#   self_service  at least one reply went out, and every reply that went out was sent by auto-send
#                 (reply_outbox.approved_by IS NULL): no person approved or wrote any of them.
#   collaborative at least one reply that went out was an AI draft (drafter claude or extractive)
#                 sent by a reviewer, and no review of the case ended rejected: a person approved
#                 the AI's draft, or edited it and sent it.
#   human         anything else: a person answered without an AI draft going out (they wrote the
#                 reply themselves where there was no AI draft, or rejected the draft and then
#                 answered), or resolved the case with no reply sent through CX-Catalyst.
# Who marked the case resolved does not matter: the button records an outcome, not an answer.
_RESOLUTION_TYPE = """
CASE
    WHEN c.escalated THEN 'escalated'
    WHEN EXISTS (SELECT 1 FROM reply_outbox o WHERE o.case_id = c.case_id AND o.status = 'sent')
     AND NOT EXISTS (SELECT 1 FROM reply_outbox o
                     WHERE o.case_id = c.case_id AND o.status = 'sent' AND o.approved_by IS NOT NULL)
        THEN 'self_service'
    WHEN EXISTS (SELECT 1 FROM reply_outbox o JOIN case_drafts d ON d.draft_id = o.draft_id
                 WHERE o.case_id = c.case_id AND o.status = 'sent' AND o.approved_by IS NOT NULL
                   AND d.drafter <> 'reviewer')
     AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE r.case_id = c.case_id AND r.status = 'rejected')
        THEN 'collaborative'
    ELSE 'human'
END
"""

_SET_TYPE = f"UPDATE cases c SET resolution_type = {_RESOLUTION_TYPE} WHERE c.case_id = $1 RETURNING resolution_type"


async def resolve(conn: Connection, case_id: UUID, *, actor_type: ActorType, actor_id: str, note: str) -> str:
    """Move the case to `resolved` (recorded with its actor) and set its resolution type, which is
    returned. Call inside a transaction; InvalidTransition if the case cannot be resolved now."""
    await transition(conn, case_id, CaseStatus.RESOLVED, actor_type=actor_type, actor_id=actor_id, note=note)
    resolution: str = await conn.fetchval(_SET_TYPE, case_id)
    return resolution


@dataclass(frozen=True)
class QuietCase:
    case_id: UUID
    last_reply_at: datetime
    has_card: bool  # its review card is in Slack, to be refreshed


# Silence is measured from the latest reply that went out (email or callback/Slack thread): a case
# with no such reply (imported history) keeps its status. A customer message after that reply
# (email, webhook or Slack) breaks the silence; a customer's email also reopens a replied case.
# FOR UPDATE SKIP LOCKED: a case another replica is resolving, or whose customer's reply is being
# taken in, is left to that transaction; a locked row re-checks `replied` before it is returned.
_QUIET = """
SELECT c.case_id, reply.at AS last_reply_at,
       EXISTS (SELECT 1 FROM slack_messages m WHERE m.case_id = c.case_id AND m.purpose = 'review_card') AS has_card
FROM cases c
CROSS JOIN LATERAL (SELECT max(i.created_at) AS at FROM case_interactions i
                    WHERE i.case_id = c.case_id AND i.interaction_type IN ('email_out', 'callback_out')) reply
WHERE c.status = 'replied' AND reply.at <= $1
  AND NOT EXISTS (SELECT 1 FROM case_interactions i
                  WHERE i.case_id = c.case_id AND i.interaction_type IN ('email_in', 'webhook_in', 'slack_in')
                    AND i.created_at > reply.at)
ORDER BY reply.at, c.case_id
LIMIT $2
FOR UPDATE OF c SKIP LOCKED
"""


async def quiet_replied(conn: Connection, replied_before: datetime, limit: int) -> list[QuietCase]:
    """Replied cases whose last reply went out before `replied_before` with no customer message
    since, locked for the caller's transaction (oldest reply first)."""
    return [QuietCase(**dict(row)) for row in await conn.fetch(_QUIET, replied_before, limit)]


@dataclass(frozen=True)
class CsatChange:
    short_id: int
    previous: int | None
    stored: bool  # False: the case already had this score


# The row lock orders two clicks at once; the second sees the first's score and, if it is the
# same, changes nothing.
_RATE = """
WITH current AS (
    SELECT case_id, short_id, csat FROM cases WHERE case_id = $1 FOR UPDATE
), rated AS (
    UPDATE cases SET csat = $2, csat_at = now()
    FROM current
    WHERE cases.case_id = current.case_id AND current.csat IS DISTINCT FROM $2
    RETURNING cases.case_id
)
SELECT current.short_id, current.csat AS previous, EXISTS (SELECT 1 FROM rated) AS stored FROM current
"""

_RATING_ROW = """
INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, metadata)
SELECT c.case_id, 'customer', cu.email, 'csat', $2, jsonb_build_object('score', $3::int, 'previous', $4::int)
FROM cases c JOIN customers cu USING (customer_id)
WHERE c.case_id = $1
"""


async def record_csat(conn: Connection, case_id: UUID, score: int) -> CsatChange | None:
    """The customer's score on the case, with a timeline row when it changes; None if there is no
    such case. Call inside a transaction."""
    row = await conn.fetchrow(_RATE, case_id, score)
    if row is None:
        return None
    change = CsatChange(**dict(row))
    if change.stored:
        message = f"rated {score}/5" + (f" (was {change.previous}/5)" if change.previous is not None else "")
        await conn.execute(_RATING_ROW, case_id, message, score, change.previous)
    return change
