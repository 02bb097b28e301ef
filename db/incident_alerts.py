"""A proactive alert as Slack shows it and reviewers act on it: the alert row with its message, its
cases and the customers it touches; the revision its message shows; acknowledge, resolve and the
one Jira issue per alert; the open alerts App Home and /metrics list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class AlertFacts:
    """One alert, with where its Slack message is. Text fields may hold customer-derived text."""

    alert_id: UUID
    fingerprint: str
    kind: str
    severity: str
    status: str
    title: str
    description: str | None
    hypothesis: str | None
    summary_source: str
    signals: list[dict[str, Any]]  # evidence.signals, as the detectors wrote them
    claude: dict[str, Any]  # the rest of Claude's summary (impact, actions), when it wrote one
    occurrence_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    jira_issue_key: str | None
    jira_claim: str | None  # who is filing (or filed) the alert's Jira issue
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None  # 'auto' when the signal went quiet, else a Slack user id
    resolved_at: datetime | None
    category: str | None
    subcategory: str | None
    metric_name: str | None
    error_code: str | None
    revision: int
    posted_revision: int
    reminded_at: datetime | None
    channel: str | None
    ts: str | None
    case_count: int


@dataclass(frozen=True)
class AlertCase:
    case_id: UUID
    short_id: int
    subject: str | None
    tier: str


@dataclass(frozen=True)
class Affected:
    """The customers an alert touches: those the detector named and those of its cases."""

    total: int
    tiers: dict[str, int]
    names: list[tuple[str, str]]  # (name, or company, or email; tier): the most valuable first


@dataclass(frozen=True)
class OpenAlert:
    alert_id: UUID
    kind: str
    severity: str
    status: str
    title: str
    first_seen_at: datetime
    acknowledged_by: str | None
    channel: str | None
    ts: str | None


_FACTS = """
SELECT a.alert_id, a.fingerprint, a.alert_type AS kind, a.severity, a.status, a.title, a.description,
       a.root_cause_hypothesis AS hypothesis, a.summary_source, a.evidence->'signals' AS signals,
       a.metadata->'claude_summary' AS claude, a.occurrence_count, a.first_seen_at, a.last_seen_at,
       a.jira_issue_key, a.metadata->>'jira_claim' AS jira_claim, a.acknowledged_by, a.acknowledged_at,
       a.resolved_by, a.resolved_at, a.category, a.subcategory, a.metric_name, a.error_code,
       a.revision, a.posted_revision, a.reminded_at, m.channel_id AS channel, m.ts,
       (SELECT count(*) FROM alert_evidence e WHERE e.alert_id = a.alert_id AND e.case_id IS NOT NULL) AS case_count
FROM proactive_alerts a
LEFT JOIN slack_messages m ON m.alert_id = a.alert_id AND m.purpose = 'alert'
WHERE a.alert_id = $1
"""


async def alert(conn: Connection, alert_id: UUID, *, lock: bool = False) -> AlertFacts | None:
    """With `lock` (in a transaction), the alert row is locked first: its message's writers and the
    reviewers' clicks take turns."""
    if lock:
        await conn.execute("SELECT 1 FROM proactive_alerts WHERE alert_id = $1 FOR UPDATE", alert_id)
    row = await conn.fetchrow(_FACTS, alert_id)
    if row is None:
        return None
    values = dict(row)
    signals = _json(values.pop("signals"))
    # A critical case's alert predates the signals list: it has none.
    values["signals"] = [s for s in signals if isinstance(s, dict)] if isinstance(signals, list) else []
    claude = _json(values.pop("claude"))
    values["claude"] = claude if isinstance(claude, dict) else {}
    return AlertFacts(**values)


# The newest evidence first: what the alert looks like now.
_CASES = """
SELECT c.case_id, c.short_id, c.subject, cu.account_tier AS tier
FROM alert_evidence e
JOIN cases c ON c.case_id = e.case_id
JOIN customers cu ON cu.customer_id = c.customer_id
WHERE e.alert_id = $1
ORDER BY e.seen_at DESC, c.short_id DESC
LIMIT $2
"""


async def alert_cases(conn: Connection, alert_id: UUID, limit: int) -> list[AlertCase]:
    return [AlertCase(**dict(r)) for r in await conn.fetch(_CASES, alert_id, limit)]


_WHO = """
WITH who AS (
    SELECT unnest(a.affected_customers) AS customer_id FROM proactive_alerts a WHERE a.alert_id = $1
    UNION
    SELECT c.customer_id FROM alert_evidence e JOIN cases c ON c.case_id = e.case_id WHERE e.alert_id = $1
)
"""

_TIERS = _WHO + "SELECT cu.account_tier AS tier, count(*) AS n FROM who JOIN customers cu USING (customer_id) GROUP BY 1"

_NAMES = _WHO + """
SELECT coalesce(nullif(cu.name, ''), nullif(cu.company, ''), cu.email) AS label, cu.account_tier AS tier
FROM who JOIN customers cu USING (customer_id)
ORDER BY CASE cu.account_tier WHEN 'enterprise' THEN 0 WHEN 'premium' THEN 1 ELSE 2 END, label
LIMIT $2
"""


async def affected(conn: Connection, alert_id: UUID, names: int) -> Affected:
    tiers = {r["tier"]: r["n"] for r in await conn.fetch(_TIERS, alert_id)}
    shown = [(r["label"], r["tier"]) for r in await conn.fetch(_NAMES, alert_id, names)]
    return Affected(total=sum(tiers.values()), tiers=tiers, names=shown)


async def save_posted(conn: Connection, alert_id: UUID, revision: int) -> None:
    """Slack now shows `revision` of the alert."""
    await conn.execute(
        "UPDATE proactive_alerts SET posted_revision = greatest(posted_revision, $2) WHERE alert_id = $1",
        alert_id, revision,
    )


async def save_reminded(conn: Connection, alert_id: UUID) -> None:
    await conn.execute("UPDATE proactive_alerts SET reminded_at = now() WHERE alert_id = $1", alert_id)


async def acknowledge(conn: Connection, alert_id: UUID, user: str) -> bool:
    """Open to acknowledged by `user`; False if it was not open."""
    done = await conn.fetchval(
        """
        UPDATE proactive_alerts
        SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = now(), revision = revision + 1,
            updated_at = now()
        WHERE alert_id = $1 AND status = 'open'
        RETURNING true
        """,
        alert_id, user,
    )
    return bool(done)


async def resolve(conn: Connection, alert_id: UUID, user: str) -> bool:
    """Resolved by `user`; False if it already was."""
    done = await conn.fetchval(
        """
        UPDATE proactive_alerts
        SET status = 'resolved', resolved_by = $2, resolved_at = now(), revision = revision + 1, updated_at = now()
        WHERE alert_id = $1 AND status <> 'resolved'
        RETURNING true
        """,
        alert_id, user,
    )
    return bool(done)


async def claim_jira(conn: Connection, alert_id: UUID, user: str) -> str | None:
    """Mark the alert's Jira issue as being filed by `user` unless someone holds that claim; returns
    who holds it (None: no such alert). Call under the alert's lock. The claim outlives a crash, so
    a retried job of the same reviewer carries on, and it stays as the record of who filed it."""
    await conn.execute(
        "UPDATE proactive_alerts SET metadata = metadata || jsonb_build_object('jira_claim', $2::text) "
        "WHERE alert_id = $1 AND NOT metadata ? 'jira_claim'",
        alert_id, user,
    )
    holder: str | None = await conn.fetchval(
        "SELECT metadata->>'jira_claim' FROM proactive_alerts WHERE alert_id = $1", alert_id
    )
    return holder


async def release_jira(conn: Connection, alert_id: UUID) -> None:
    await conn.execute(
        "UPDATE proactive_alerts SET metadata = metadata - 'jira_claim' WHERE alert_id = $1 AND jira_issue_key IS NULL",
        alert_id,
    )


async def save_jira_issue(conn: Connection, alert_id: UUID, key: str) -> None:
    await conn.execute(
        "UPDATE proactive_alerts SET jira_issue_key = $2, revision = revision + 1, updated_at = now() "
        "WHERE alert_id = $1",
        alert_id, key,
    )


_SEVERITY_RANK = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END"

_OPEN = f"""
SELECT a.alert_id, a.alert_type AS kind, a.severity, a.status, a.title, a.first_seen_at, a.acknowledged_by,
       m.channel_id AS channel, m.ts, count(*) OVER () AS total
FROM proactive_alerts a
LEFT JOIN slack_messages m ON m.alert_id = a.alert_id AND m.purpose = 'alert'
WHERE a.status <> 'resolved'
ORDER BY a.status = 'acknowledged', {_SEVERITY_RANK}, a.first_seen_at
LIMIT $1
"""


async def open_alerts(conn: Connection, limit: int) -> tuple[list[OpenAlert], int]:
    """The alerts not yet resolved (unacknowledged, then worst, then oldest first), at most `limit`,
    and how many there are."""
    rows = await conn.fetch(_OPEN, limit)
    total = rows[0]["total"] if rows else 0
    return [OpenAlert(**{k: v for k, v in dict(r).items() if k != "total"}) for r in rows], total


async def open_alert_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(severity, status) → how many alerts are open or acknowledged."""
    rows = await conn.fetch(
        "SELECT severity, status, count(*) AS n FROM proactive_alerts WHERE status <> 'resolved' "
        "GROUP BY severity, status"
    )
    return {(r["severity"], r["status"]): r["n"] for r in rows}


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value
