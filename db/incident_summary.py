"""What Claude is shown of a detected incident (the alert, its signals, its affected customers and
a few of its cases) and where its summary goes: the alert's description and root-cause hypothesis."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class Incident:
    alert_id: UUID
    alert_type: str
    severity: str
    status: str
    title: str
    description: str | None  # the detector's template summary until Claude's replaces it
    summary_source: str
    first_seen_at: datetime
    last_seen_at: datetime
    occurrence_count: int
    case_count: int
    signals: list[dict[str, Any]]  # evidence.signals, as the detectors wrote them
    tiers: dict[str, int]  # affected customers by account tier


@dataclass(frozen=True)
class ExampleCase:
    short_id: int
    subject: str | None
    description: str  # at most the `chars` asked for
    cut: bool  # the description was longer
    tier: str
    category: str | None
    subcategory: str | None
    priority: str | None
    created_at: datetime


_INCIDENT = """
SELECT a.alert_id, a.alert_type, a.severity, a.status, a.title, a.description, a.summary_source,
       a.first_seen_at, a.last_seen_at, a.occurrence_count,
       (SELECT count(*) FROM alert_evidence e WHERE e.alert_id = a.alert_id AND e.case_id IS NOT NULL) AS case_count,
       a.evidence->'signals' AS signals,
       (SELECT coalesce(jsonb_object_agg(t.account_tier, t.n), '{}')
        FROM (SELECT cu.account_tier, count(*) AS n FROM customers cu
              WHERE cu.customer_id = ANY (a.affected_customers) GROUP BY cu.account_tier) t) AS tiers
FROM proactive_alerts a
WHERE a.alert_id = $1
"""


async def load_incident(conn: Connection, alert_id: UUID) -> Incident | None:
    row = await conn.fetchrow(_INCIDENT, alert_id)
    if row is None:
        return None
    values = dict(row)
    # Alerts older than the signals contract (a critical case's) carry no list there.
    signals = json.loads(values.pop("signals") or "null")
    values["signals"] = [s for s in signals if isinstance(s, dict)] if isinstance(signals, list) else []
    values["tiers"] = {str(k): int(v) for k, v in json.loads(values["tiers"]).items()}
    return Incident(**values)


# The newest evidence first: what the incident looks like now.
_EXAMPLE_CASES = """
SELECT c.short_id, c.subject, left(c.description, $3) AS description, length(c.description) > $3 AS cut,
       cu.account_tier AS tier, c.category, c.subcategory, c.priority, c.created_at
FROM alert_evidence e
JOIN cases c ON c.case_id = e.case_id
JOIN customers cu ON cu.customer_id = c.customer_id
WHERE e.alert_id = $1
ORDER BY e.seen_at DESC, c.short_id DESC
LIMIT $2
"""


async def example_cases(conn: Connection, alert_id: UUID, *, limit: int, chars: int) -> list[ExampleCase]:
    """Up to `limit` of the alert's cases, each description cut to `chars` characters."""
    return [ExampleCase(**dict(r)) for r in await conn.fetch(_EXAMPLE_CASES, alert_id, limit, chars)]


# Only over the template: a second run (or a run racing this one) never overwrites Claude's answer
# or shows it twice. The rest of the answer is kept for whoever renders the alert.
_SAVE = """
UPDATE proactive_alerts
SET description = $2, root_cause_hypothesis = $3, summary_source = 'claude', revision = revision + 1,
    metadata = metadata || jsonb_build_object('claude_summary', $4::jsonb), updated_at = now()
WHERE alert_id = $1 AND summary_source = 'template'
RETURNING revision
"""


async def save_summary(
    conn: Connection, alert_id: UUID, *, summary: str, hypothesis: str, details: dict[str, Any]
) -> int | None:
    """Write Claude's summary over the template and bump the revision; the new revision, or None
    if the alert no longer has a template summary (or is gone)."""
    revision: int | None = await conn.fetchval(_SAVE, alert_id, summary, hypothesis, json.dumps(details))
    return revision
