"""Drafts, with the auto-send decision, and the reply outbox that sends each draft at most once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class CaseForDraft:
    case_id: UUID
    short_id: int
    status: str
    channel: str
    subject: str | None
    description: str
    category: str | None
    subcategory: str | None
    priority: str | None
    confidence: float | None
    customer_email: str
    customer_name: str | None
    tier: str
    gmail_thread_id: str | None
    email_message_id: str | None
    metadata: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"CX-{self.short_id}"


_LOAD = """
SELECT c.case_id, c.short_id, c.status, c.channel, c.subject, c.description, c.category, c.subcategory,
       c.priority, c.confidence_score::float8 AS confidence, cu.email AS customer_email,
       cu.name AS customer_name, cu.account_tier AS tier, c.gmail_thread_id, c.email_message_id, c.metadata
FROM cases c JOIN customers cu USING (customer_id)
WHERE c.case_id = $1
"""


async def load_case(conn: Connection, case_id: UUID, *, lock: bool = False) -> CaseForDraft | None:
    row = await conn.fetchrow(_LOAD + (" FOR UPDATE OF c" if lock else ""), case_id)
    if row is None:
        return None
    values = dict(row)
    values["metadata"] = json.loads(values["metadata"]) if isinstance(values["metadata"], str) else values["metadata"]
    return CaseForDraft(**values)


async def similar_resolved(conn: Connection, case_id: UUID, subcategory: str | None,
                           limit: int = 3) -> list[tuple[str, str]]:
    """(request, reply sent) of the latest answered cases with the same subcategory."""
    if subcategory is None:
        return []
    rows = await conn.fetch(
        """
        SELECT c.description, o.body
        FROM cases c JOIN reply_outbox o ON o.case_id = c.case_id AND o.status = 'sent'
        WHERE c.subcategory = $1 AND c.case_id <> $2 AND c.status IN ('replied', 'resolved', 'closed')
          AND NOT c.metadata ? 'erased_at'
        ORDER BY o.sent_at DESC
        LIMIT $3
        """,
        subcategory, case_id, limit,
    )
    return [(r["description"], r["body"]) for r in rows]


async def sent_before(conn: Connection, before: datetime, limit: int) -> list[tuple[str | None, str]]:
    """(subcategory, body) of the latest replies sent before `before`, newest first."""
    rows = await conn.fetch(
        """
        SELECT c.subcategory, o.body
        FROM reply_outbox o JOIN cases c ON c.case_id = o.case_id
        WHERE o.status = 'sent' AND o.sent_at < $1 AND NOT c.metadata ? 'erased_at'
        ORDER BY o.sent_at DESC
        LIMIT $2
        """,
        before, limit,
    )
    return [(r["subcategory"], r["body"]) for r in rows]


async def auto_replies_today(conn: Connection, case_id: UUID) -> int:
    """Automatic replies (no approver) queued for the case's customer in the last 24 hours, failed ones
    aside. Call it in the transaction that queues the next one: it first takes a lock on the customer,
    held to the end of that transaction, so two drafts cannot both take the last reply allowed."""
    # Two statements: under READ COMMITTED the count's snapshot must be taken after the lock is granted.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('auto-replies:' || customer_id::text, 0)) "
        "FROM cases WHERE case_id = $1",
        case_id,
    )
    count: int = await conn.fetchval(
        """
        SELECT count(*)
        FROM reply_outbox o JOIN cases c ON c.case_id = o.case_id
        WHERE c.customer_id = (SELECT customer_id FROM cases WHERE case_id = $1)
          AND o.approved_by IS NULL AND o.status <> 'failed' AND o.created_at > now() - interval '24 hours'
        """,
        case_id,
    )
    return count


async def save_draft(
    conn: Connection,
    case_id: UUID,
    *,
    body: str,
    cited: list[UUID],
    dropped: list[str],
    confidence: float,
    questions: list[str],
    risks: list[str],
    drafter: str,
    model: str | None,
    prompt_version: str | None,
    decision: str,
    reason: str,
) -> UUID:
    draft_id: UUID = await conn.fetchval(
        """
        INSERT INTO case_drafts (case_id, body, cited_article_ids, dropped_citations, confidence, questions, risks,
                                 drafter, model, prompt_version, decision, decision_reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        RETURNING draft_id
        """,
        case_id, body, cited, dropped, confidence, questions, risks, drafter, model, prompt_version, decision, reason,
    )
    return draft_id


@dataclass(frozen=True)
class StoredDraft:
    draft_id: UUID
    case_id: UUID
    body: str
    cited_article_ids: list[UUID]
    confidence: float
    decision: str
    decision_reason: str
    drafter: str


_DRAFT = "SELECT draft_id, case_id, body, cited_article_ids, confidence, decision, decision_reason, drafter " \
         "FROM case_drafts "


async def latest_draft(conn: Connection, case_id: UUID) -> StoredDraft | None:
    row = await conn.fetchrow(_DRAFT + "WHERE case_id = $1 ORDER BY created_at DESC LIMIT 1", case_id)
    return StoredDraft(**dict(row)) if row else None


async def get_draft(conn: Connection, draft_id: UUID) -> StoredDraft | None:
    row = await conn.fetchrow(_DRAFT + "WHERE draft_id = $1", draft_id)
    return StoredDraft(**dict(row)) if row else None


@dataclass(frozen=True)
class Outgoing:
    outbox_id: UUID
    case_id: UUID
    draft_id: UUID | None
    draft_key: str
    channel: str
    to_address: str
    subject: str | None
    body: str
    in_reply_to: str | None
    references_header: str | None
    thread_id: str | None
    message_id: str | None
    status: str
    attempts: int
    provider_message_id: str | None
    approved_by: str | None


_OUTBOX_COLUMNS = ("outbox_id, case_id, draft_id, draft_key, channel, to_address, subject, body, in_reply_to, "
                   "references_header, thread_id, message_id, status, attempts, provider_message_id, approved_by")


async def add_outgoing(
    conn: Connection,
    *,
    case_id: UUID,
    draft_id: UUID,
    channel: str,
    to_address: str,
    subject: str | None,
    body: str,
    in_reply_to: str | None,
    references_header: str | None,
    thread_id: str | None,
    message_id: str,
    approved_by: str | None,
) -> tuple[UUID, bool]:
    """The outbox row of a draft: (its id, whether this call created it). The unique draft_key
    makes a second approval of the same draft find the first one's row instead of adding one."""
    row = await conn.fetchrow(
        """
        WITH new AS (
            INSERT INTO reply_outbox (case_id, draft_id, draft_key, channel, to_address, subject, body, in_reply_to,
                                      references_header, thread_id, message_id, approved_by)
            VALUES ($1, $2::uuid, 'draft:' || $2::uuid::text, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (draft_key) DO NOTHING
            RETURNING outbox_id
        )
        SELECT outbox_id, true AS created FROM new
        UNION ALL
        SELECT outbox_id, false FROM reply_outbox WHERE draft_key = 'draft:' || $2::uuid::text
        LIMIT 1
        """,
        case_id, draft_id, channel, to_address, subject, body, in_reply_to, references_header, thread_id,
        message_id, approved_by,
    )
    if row is None:  # a concurrent insert committed after this statement's snapshot was taken
        existing = await outgoing_for_draft(conn, draft_id)
        assert existing is not None
        return existing.outbox_id, False
    return row["outbox_id"], row["created"]


async def outgoing(conn: Connection, outbox_id: UUID) -> Outgoing | None:
    row = await conn.fetchrow(f"SELECT {_OUTBOX_COLUMNS} FROM reply_outbox WHERE outbox_id = $1", outbox_id)
    return Outgoing(**dict(row)) if row else None


async def outgoing_for_draft(conn: Connection, draft_id: UUID) -> Outgoing | None:
    row = await conn.fetchrow(
        f"SELECT {_OUTBOX_COLUMNS} FROM reply_outbox WHERE draft_key = 'draft:' || $1::uuid::text", draft_id
    )
    return Outgoing(**dict(row)) if row else None


async def mark_sending(conn: Connection, outbox_id: UUID) -> None:
    """Committed before the provider is called: a row found in `sending` later may have been sent."""
    await conn.execute(
        "UPDATE reply_outbox SET status = 'sending', attempts = attempts + 1, updated_at = now() WHERE outbox_id = $1",
        outbox_id,
    )


async def mark_sent(conn: Connection, outbox_id: UUID, provider_message_id: str | None) -> None:
    await conn.execute(
        "UPDATE reply_outbox SET status = 'sent', provider_message_id = $2, sent_at = now(), last_error = NULL, "
        "updated_at = now() WHERE outbox_id = $1",
        outbox_id, provider_message_id,
    )


async def mark_error(conn: Connection, outbox_id: UUID, error: str, *, final: bool = False) -> None:
    await conn.execute(
        "UPDATE reply_outbox SET last_error = $2, status = CASE WHEN $3 THEN 'failed' ELSE status END, "
        "updated_at = now() WHERE outbox_id = $1",
        outbox_id, error[:1000], final,
    )


async def record_reply(conn: Connection, case_id: UUID, *, channel: str, body: str,
                       external_message_id: str | None, actor_id: str) -> None:
    """The reply on the case's timeline, and its first response time."""
    await conn.execute(
        "INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, external_message_id) "
        "VALUES ($1, 'system', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        case_id, actor_id, "email_out" if channel == "email" else "callback_out", body, external_message_id,
    )
    await conn.execute(
        "UPDATE cases SET first_response_at = coalesce(first_response_at, now()) WHERE case_id = $1", case_id
    )
