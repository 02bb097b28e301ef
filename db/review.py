"""The review hub's rows: review_queue (one pending review per case), the card's Slack message,
reviewer feedback, and the ids of Slack deliveries already handled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class CardFacts:
    """What a review card shows about a case, read in one statement."""

    case_id: UUID
    short_id: int
    status: str
    subject: str | None
    description: str
    summary: str | None
    category: str | None
    subcategory: str | None
    priority: str | None
    confidence: float | None
    triage_reason: str | None
    owner: str | None
    jira_issue_key: str | None
    customer_email: str
    customer_name: str | None
    tier: str
    draft_id: UUID | None
    draft: str | None
    draft_confidence: float | None
    decision_reason: str | None
    citations: list[tuple[str, str | None]]
    review_id: UUID | None
    review_status: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_comments: str | None
    card_channel: str | None
    card_ts: str | None
    resolution_type: str | None
    resolved_at: datetime | None
    resolved_by: str | None  # the reviewer who marked it resolved; None when the system resolved it
    csat: int | None


_FACTS = """
SELECT c.case_id, c.short_id, c.status, c.subject, c.description, c.summary, c.category, c.subcategory,
       c.priority, c.confidence_score::float8 AS confidence, c.triage_reason, c.owner_slack_user_id AS owner,
       c.jira_issue_key, cu.email AS customer_email, cu.name AS customer_name, cu.account_tier AS tier,
       d.draft_id, d.body AS draft, d.confidence::float8 AS draft_confidence, d.decision_reason,
       cited.titles AS citation_titles, cited.urls AS citation_urls,
       r.review_id, r.status AS review_status, r.reviewed_by, r.reviewed_at, r.reviewer_comments AS review_comments,
       m.channel_id AS card_channel, m.ts AS card_ts,
       c.resolution_type, c.resolved_at, resolved.actor_id AS resolved_by, c.csat
FROM cases c
JOIN customers cu USING (customer_id)
LEFT JOIN LATERAL (SELECT * FROM case_drafts WHERE case_id = c.case_id ORDER BY created_at DESC LIMIT 1) d ON true
LEFT JOIN LATERAL (SELECT array_agg(a.title ORDER BY n) AS titles, array_agg(a.url ORDER BY n) AS urls
                   FROM unnest(d.cited_article_ids) WITH ORDINALITY AS cited(article_id, n)
                   JOIN kb_articles a USING (article_id)) cited ON true
LEFT JOIN LATERAL (SELECT * FROM review_queue WHERE case_id = c.case_id ORDER BY created_at DESC LIMIT 1) r ON true
LEFT JOIN slack_messages m ON m.case_id = c.case_id AND m.purpose = 'review_card'
LEFT JOIN LATERAL (SELECT CASE WHEN actor_type = 'reviewer' THEN actor_id END AS actor_id FROM case_interactions
                   WHERE case_id = c.case_id AND c.status = 'resolved' AND interaction_type = 'status_change'
                     AND to_status = 'resolved'
                   ORDER BY created_at DESC LIMIT 1) resolved ON true
WHERE c.case_id = $1
"""


async def card_facts(conn: Connection, case_id: UUID, *, lock: bool = False) -> CardFacts | None:
    """With `lock`, the case row is locked first (call in a transaction): decisions on one case queue up."""
    if lock:
        await conn.execute("SELECT 1 FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
    row = await conn.fetchrow(_FACTS, case_id)
    if row is None:
        return None
    values = dict(row)
    values["citations"] = list(zip(values.pop("citation_titles") or [], values.pop("citation_urls") or []))
    return CardFacts(**values)


async def open_review(
    conn: Connection, case_id: UUID, draft: str | None, confidence: float | None, reason: str,
    due_at: datetime,
) -> UUID:
    """The case's pending review, created if there is none (one pending review per case)."""
    created: UUID | None = await conn.fetchval(
        """
        INSERT INTO review_queue (case_id, draft, ai_confidence, review_reason, due_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (case_id) WHERE status = 'pending' DO NOTHING
        RETURNING review_id
        """,
        case_id, draft, confidence, reason, due_at,
    )
    if created is not None:
        return created
    pending: UUID = await conn.fetchval(
        "SELECT review_id FROM review_queue WHERE case_id = $1 AND status = 'pending'", case_id
    )
    return pending


async def save_card_message(conn: Connection, case_id: UUID, channel: str, ts: str) -> None:
    """Record the case's card; the post it came from is over (its intent goes)."""
    await conn.execute(
        """
        WITH done AS (DELETE FROM slack_post_intents WHERE case_id = $1 AND purpose = 'review_card')
        INSERT INTO slack_messages (case_id, purpose, channel_id, ts) VALUES ($1, 'review_card', $2, $3)
        ON CONFLICT (case_id, purpose) WHERE case_id IS NOT NULL
        DO UPDATE SET channel_id = EXCLUDED.channel_id, ts = EXCLUDED.ts, updated_at = now()
        """,
        case_id, channel, ts,
    )


async def begin_card_post(conn: Connection, case_id: UUID) -> datetime | None:
    """Say (committed, on a connection outside a transaction) that the case's card is about to be
    posted; returns when an earlier post began that was never recorded, or None."""
    earlier: datetime | None = await conn.fetchval(
        """
        WITH earlier AS (SELECT started_at FROM slack_post_intents WHERE case_id = $1 AND purpose = 'review_card'),
             fresh AS (INSERT INTO slack_post_intents (case_id, purpose) VALUES ($1, 'review_card')
                       ON CONFLICT (case_id, purpose) DO NOTHING)
        SELECT started_at FROM earlier
        """,
        case_id,
    )
    return earlier


async def decide(
    conn: Connection, review_id: UUID, status: str, reviewer: str, *, comments: str | None = None,
    final_solution: str | None = None,
) -> bool:
    """Close a pending review with its outcome; False if it was no longer pending (someone else won)."""
    decided = await conn.fetchval(
        """
        UPDATE review_queue SET status = $2, reviewed_by = $3, reviewed_at = now(), reviewer_comments = $4,
               final_solution = $5, version = version + 1, updated_at = now()
        WHERE review_id = $1 AND status = 'pending'
        RETURNING review_id
        """,
        review_id, status, reviewer, comments, final_solution,
    )
    return decided is not None


async def assign(conn: Connection, case_id: UUID, reviewer: str) -> str | None:
    """Make `reviewer` the case's owner; returns who owned it before (None: the bot)."""
    previous: str | None = await conn.fetchval(
        "SELECT owner_slack_user_id FROM cases WHERE case_id = $1 FOR UPDATE", case_id
    )
    await conn.execute(
        "UPDATE cases SET owner_slack_user_id = $2, updated_at = now() WHERE case_id = $1", case_id, reviewer
    )
    await conn.execute(
        "UPDATE review_queue SET assigned_to = $2, updated_at = now() WHERE case_id = $1 AND status = 'pending'",
        case_id, reviewer,
    )
    return previous


async def add_feedback(
    conn: Connection, case_id: UUID, review_id: UUID | None, feedback_type: str, reviewer: str, *,
    field: str | None = None, ai_value: str | None = None, human_value: str | None = None,
    comment: str | None = None, agent_name: str = "draft",
) -> None:
    await conn.execute(
        """
        INSERT INTO agent_feedback (case_id, review_id, agent_name, feedback_type, field, ai_value, human_value,
                                    reviewer, comment)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        case_id, review_id, agent_name, feedback_type, field, ai_value, human_value, reviewer, comment,
    )


async def first_deliveries(conn: Connection, delivery_ids: list[str]) -> set[str]:
    """The ids among these seen for the first time (a repeated id counts once)."""
    rows = await conn.fetch(
        "INSERT INTO slack_events_seen (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
        delivery_ids,
    )
    return {r["event_id"] for r in rows}


async def first_delivery(conn: Connection, delivery_id: str) -> bool:
    """True the first time a Slack delivery id is seen; a redelivered copy gets False."""
    return bool(await first_deliveries(conn, [delivery_id]))


async def set_jira_issue(conn: Connection, case_id: UUID, key: str) -> None:
    await conn.execute("UPDATE cases SET jira_issue_key = $2, updated_at = now() WHERE case_id = $1", case_id, key)


async def correct_labels(conn: Connection, case_id: UUID, category: str | None, subcategory: str | None,
                         priority: str | None) -> None:
    """A reviewer's labels replace triage's (NULL keeps a label as it is)."""
    await conn.execute(
        "UPDATE cases SET category = coalesce($2, category), subcategory = coalesce($3, subcategory), "
        "priority = coalesce($4, priority), updated_at = now() WHERE case_id = $1",
        case_id, category, subcategory, priority,
    )


async def claim_escalation(conn: Connection, case_id: UUID, reviewer: str) -> str | None:
    """Mark the case as being escalated by `reviewer` unless it already is; returns who holds the
    claim (None: the case has no row). Call under the case lock. The claim outlives a crash, so a
    retried job of the same reviewer carries on where it stopped."""
    await conn.execute(
        "UPDATE cases SET metadata = metadata || jsonb_build_object('escalating', $2::text) "
        "WHERE case_id = $1 AND NOT metadata ? 'escalating'",
        case_id, reviewer,
    )
    holder: str | None = await conn.fetchval("SELECT metadata->>'escalating' FROM cases WHERE case_id = $1", case_id)
    return holder


async def release_escalation(conn: Connection, case_id: UUID) -> None:
    await conn.execute("UPDATE cases SET metadata = metadata - 'escalating' WHERE case_id = $1", case_id)
