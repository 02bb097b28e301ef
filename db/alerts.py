"""Alerts in proactive_alerts, with their evidence and their Slack message. So far one kind: the
urgent alert of a case triage sent straight to a person, one per case (fingerprint `critical_case:<id>`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class UrgentCaseFacts:
    """What a critical case's alert shows, and where its alert and its review card are in Slack."""

    case_id: UUID
    short_id: int
    status: str
    priority: str | None
    category: str | None
    subcategory: str | None
    subject: str | None
    summary: str | None
    reason: str | None  # the route's reason
    customer_email: str
    customer_name: str | None
    tier: str
    owner: str | None
    alert_channel: str | None
    alert_ts: str | None
    card_channel: str | None
    card_ts: str | None


def urgent_fingerprint(case_id: UUID) -> str:
    return f"critical_case:{case_id}"


# The newest alert of the fingerprint, whatever its status: a case is alerted once, even if its
# alert was resolved meanwhile.
_FIND = "SELECT alert_id FROM proactive_alerts WHERE fingerprint = $1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE"

_OPEN = """
WITH c AS (
    SELECT c.case_id, c.short_id, c.customer_id, c.priority, c.subject, c.summary,
           c.metadata->>'route_reason' AS reason
    FROM cases c WHERE c.case_id = $2
)
INSERT INTO proactive_alerts (fingerprint, alert_type, severity, title, description, affected_customers, evidence)
SELECT $1, 'critical_case', 'critical', 'CX-' || c.short_id || ' needs a person now',
       coalesce(c.reason, 'routed to a person at once'), ARRAY[c.customer_id],
       jsonb_build_object('case_id', c.case_id, 'priority', c.priority)
FROM c
ON CONFLICT (fingerprint) WHERE status <> 'resolved' DO NOTHING
RETURNING alert_id
"""

_EVIDENCE = """
INSERT INTO alert_evidence (alert_id, evidence_key, case_id, details)
VALUES ($1, 'case:' || $2::uuid, $2, jsonb_build_object('case_id', $2::uuid))
ON CONFLICT DO NOTHING
"""


async def open_urgent_alert(conn: Connection, case_id: UUID) -> UUID | None:
    """The case's urgent alert, created on first call with the case as its evidence, and locked
    for the caller's transaction (so that one caller at a time posts it). None if there is no such case."""
    fingerprint = urgent_fingerprint(case_id)
    alert_id: UUID | None = await conn.fetchval(_FIND, fingerprint)
    if alert_id is None:
        await conn.fetchval(_OPEN, fingerprint, case_id)
        # A concurrent caller's insert wins the conflict; either way the row is there once it commits.
        alert_id = await conn.fetchval(_FIND, fingerprint)
    if alert_id is not None:
        await conn.execute(_EVIDENCE, alert_id, case_id)
    return alert_id


_URGENT_CASE = """
SELECT c.case_id, c.short_id, c.status, c.priority, c.category, c.subcategory, c.subject, c.summary,
       c.metadata->>'route_reason' AS reason, cu.email AS customer_email, cu.name AS customer_name,
       cu.account_tier AS tier, c.owner_slack_user_id AS owner,
       am.channel_id AS alert_channel, am.ts AS alert_ts,
       cm.channel_id AS card_channel, cm.ts AS card_ts
FROM cases c
JOIN customers cu USING (customer_id)
LEFT JOIN LATERAL (SELECT alert_id FROM proactive_alerts WHERE fingerprint = $2
                   ORDER BY created_at DESC LIMIT 1) a ON true
LEFT JOIN slack_messages am ON am.alert_id = a.alert_id AND am.purpose = 'alert'
LEFT JOIN slack_messages cm ON cm.case_id = c.case_id AND cm.purpose = 'review_card'
WHERE c.case_id = $1
"""


async def urgent_case(conn: Connection, case_id: UUID) -> UrgentCaseFacts | None:
    row = await conn.fetchrow(_URGENT_CASE, case_id, urgent_fingerprint(case_id))
    return UrgentCaseFacts(**dict(row)) if row else None


async def save_alert_message(conn: Connection, alert_id: UUID, channel: str, ts: str) -> None:
    await conn.execute(
        """
        INSERT INTO slack_messages (alert_id, purpose, channel_id, ts) VALUES ($1, 'alert', $2, $3)
        ON CONFLICT (alert_id, purpose) WHERE alert_id IS NOT NULL
        DO UPDATE SET channel_id = EXCLUDED.channel_id, ts = EXCLUDED.ts, updated_at = now()
        """,
        alert_id, channel, ts,
    )
    # What was posted is the alert as it stands: the post job has nothing left to show.
    await conn.execute("UPDATE proactive_alerts SET posted_revision = revision WHERE alert_id = $1", alert_id)
