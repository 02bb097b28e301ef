"""Erasing one customer's personal data, on the caller's transaction.

What goes: every text the customer wrote or that was written to them or about them, and what is
derived from it (embeddings, search logs, training examples, the redaction map). What stays: the
rows the anonymous figures count (cases with their labels, statuses and timestamps; status moves;
reviews and drafts as decisions; LLM costs), so daily metrics and usage do not change. Each case's
metadata keeps its route and triager and gains `erased_at`."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class Customer:
    customer_id: UUID
    case_ids: list[UUID]


@dataclass(frozen=True)
class Removed:
    """One table's share of an erasure: `action` is deleted or cleared (columns emptied in place)."""

    table: str
    action: str
    columns: str
    rows: int


async def find_customer(conn: Connection, email: str) -> Customer | None:
    """The customer with this address (any case), locked, with their cases; None if unknown."""
    customer_id: UUID | None = await conn.fetchval(
        "SELECT customer_id FROM customers WHERE lower(email) = lower($1) FOR UPDATE", email.strip(),
    )
    if customer_id is None:
        return None
    case_ids = [r["case_id"] for r in await conn.fetch(
        "SELECT case_id FROM cases WHERE customer_id = $1 ORDER BY created_at FOR UPDATE", customer_id,
    )]
    return Customer(customer_id, case_ids)


# The messages the desk posted about these cases: review cards (and reminders in their threads), and
# the urgent alert of a critical case, which is about that case alone.
_SLACK_MESSAGES = """
SELECT channel_id, ts FROM slack_messages WHERE case_id = ANY($1::uuid[])
UNION
SELECT m.channel_id, m.ts FROM slack_messages m JOIN proactive_alerts a USING (alert_id)
WHERE a.alert_type = 'critical_case' AND a.fingerprint = ANY(SELECT 'critical_case:' || unnest($1::uuid[]))
ORDER BY 1, 2
"""


async def slack_messages(conn: Connection, case_ids: list[UUID]) -> list[tuple[str, str]]:
    return [(r["channel_id"], r["ts"]) for r in await conn.fetch(_SLACK_MESSAGES, case_ids)]


def _counted(statement: str) -> str:
    return f"WITH x AS ({statement} RETURNING 1) SELECT count(*) FROM x"


# (table, action, columns, statement over $1 = the case ids); in this order, as later ones may read
# what earlier ones leave.
_CASE_STEPS: list[tuple[str, str, str, str]] = [
    ("case_interactions", "deleted", "message, metadata, actor_id",
     "DELETE FROM case_interactions WHERE case_id = ANY($1::uuid[]) AND interaction_type <> 'status_change'"),
    # Status moves stay: backlog and escalation counts are read from them.
    ("case_interactions", "cleared", "message, metadata, actor_id (status moves kept)",
     "UPDATE case_interactions SET message = NULL, metadata = '{}',"
     " actor_id = CASE WHEN actor_type = 'customer' THEN NULL ELSE actor_id END"
     " WHERE case_id = ANY($1::uuid[]) AND interaction_type = 'status_change'"),
    ("case_drafts", "cleared", "body, questions, risks",
     "UPDATE case_drafts SET body = '', questions = '{}', risks = '{}' WHERE case_id = ANY($1::uuid[])"),
    ("review_queue", "cleared", "draft, final_solution, reviewer_comments, review_reason, metadata",
     "UPDATE review_queue SET draft = NULL, final_solution = NULL, reviewer_comments = NULL, review_reason = NULL,"
     " metadata = '{}', updated_at = now() WHERE case_id = ANY($1::uuid[])"),
    ("agent_feedback", "cleared", "ai_value and human_value of drafts, comment, metadata",
     "UPDATE agent_feedback SET comment = NULL, metadata = '{}',"
     " ai_value = CASE WHEN field IN ('category', 'subcategory', 'priority', 'sentiment', 'language')"
     " THEN ai_value END,"
     " human_value = CASE WHEN field IN ('category', 'subcategory', 'priority', 'sentiment', 'language')"
     " THEN human_value END"
     " WHERE case_id = ANY($1::uuid[])"),
    # A reply not yet sent never will be: its text is gone.
    ("reply_outbox", "cleared", "to_address, subject, body, last_error (unsent ones failed)",
     "UPDATE reply_outbox SET to_address = '', subject = NULL, body = '',"
     " status = CASE WHEN status IN ('pending', 'sending') THEN 'failed' ELSE status END,"
     " last_error = CASE WHEN status IN ('pending', 'sending') THEN 'customer erased' END, updated_at = now()"
     " WHERE case_id = ANY($1::uuid[])"),
    ("kb_searches", "deleted", "query, results",
     "DELETE FROM kb_searches WHERE case_id = ANY($1::uuid[])"),
    ("case_embeddings", "deleted", "embedding",
     "DELETE FROM case_embeddings WHERE case_id = ANY($1::uuid[])"),
    ("labelled_examples", "deleted", "text, embedding",
     "DELETE FROM labelled_examples WHERE case_id = ANY($1::uuid[])"),
    ("case_pii", "deleted", "map",
     "DELETE FROM case_pii WHERE case_id = ANY($1::uuid[])"),
    ("workflow_executions", "cleared", "error_message, metadata",
     "UPDATE workflow_executions SET error_message = NULL, metadata = '{}' WHERE case_id = ANY($1::uuid[])"),
    ("alert_evidence", "cleared", "details (the case id kept)",
     "UPDATE alert_evidence SET details = jsonb_build_object('case_id', case_id) WHERE case_id = ANY($1::uuid[])"),
    ("cases", "cleared", "subject, description, summary, triage_reason, metadata (route kept)",
     "UPDATE cases SET subject = NULL, description = '', summary = NULL, triage_reason = NULL,"
     " metadata = jsonb_build_object('route', metadata->'route', 'triager', metadata->'triager', 'erased_at', now()),"
     " updated_at = now() WHERE case_id = ANY($1::uuid[])"),
]

# The address cannot be NULL nor repeat: a placeholder under the reserved .invalid domain.
_CUSTOMER = """
UPDATE customers SET email = 'erased-' || customer_id || '@erased.invalid', name = NULL, company = NULL,
       metadata = jsonb_build_object('erased_at', now()), updated_at = now()
WHERE customer_id = $1
"""


async def erase(conn: Connection, customer: Customer) -> list[Removed]:
    """Erase the customer's data; what each table lost."""
    removed = []
    for table, action, columns, statement in _CASE_STEPS:
        rows: int = await conn.fetchval(_counted(statement), customer.case_ids)
        removed.append(Removed(table, action, columns, rows))
    await conn.execute(_CUSTOMER, customer.customer_id)
    removed.append(Removed("customers", "cleared", "email, name, company, metadata", 1))
    return removed
