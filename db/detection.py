"""What the detectors read (metric points, the window's cases, baselines, case vectors) and how an
alert's lifecycle is written: opened once per fingerprint, evidence added without repeats, resolved
when quiet, reminded at most every so often."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np

from db.connection import Connection

# ---- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    metric_id: UUID
    name: str
    value: float
    unit: str | None
    service: str | None
    recorded_at: datetime
    warning: float | None
    critical: float | None


async def metric_points(conn: Connection, start: datetime, end: datetime) -> list[MetricRow]:
    """Points recorded in [start, end], with the thresholds they carry or else their metric's."""
    rows = await conn.fetch(
        """
        SELECT m.metric_id, m.metric_name AS name, m.metric_value AS value, m.unit, m.service, m.recorded_at,
               coalesce(m.threshold_warning, t.threshold_warning) AS warning,
               coalesce(m.threshold_critical, t.threshold_critical) AS critical
        FROM health_metrics m LEFT JOIN metric_thresholds t USING (metric_name)
        WHERE m.recorded_at > $1 AND m.recorded_at <= $2
        """,
        start, end,
    )
    return [MetricRow(**dict(r)) for r in rows]


@dataclass(frozen=True)
class RecentCase:
    case_id: UUID
    customer_id: UUID
    created_at: datetime
    category: str | None
    subcategory: str | None
    subject: str | None
    text: str  # the start of the description
    error_codes: list[str]


async def recent_cases(conn: Connection, start: datetime, end: datetime) -> list[RecentCase]:
    """Cases created in (start, end], oldest first."""
    rows = await conn.fetch(
        """
        SELECT case_id, customer_id, created_at, category, subcategory, subject, left(description, 2000) AS text,
               error_codes
        FROM cases WHERE created_at > $1 AND created_at <= $2
        ORDER BY created_at, case_id
        """,
        start, end,
    )
    return [RecentCase(*r) for r in rows]  # the columns in the fields' order


async def volume_baseline(conn: Connection, start: datetime, end: datetime) -> list[tuple[str | None, str | None, int, int, int]]:
    """Cases of [start, end) as (category, subcategory, day, hour of week, count): `day` counts
    whole days back from `end`, the hour of the week is Monday 00h UTC = 0."""
    # Counted per hour back from `end` (its day) and per clock hour (its hour of the week), labelled
    # here: extract() on each of a month's cases took 3.6 s of a 1M-case pass, date_bin 1.5 s.
    rows = await conn.fetch(
        """
        SELECT category, subcategory, date_bin('1 hour', created_at, $2) AS back,
               date_bin('1 hour', created_at, TIMESTAMPTZ 'epoch') AS clock, count(*)::int AS n
        FROM cases WHERE created_at >= $1 AND created_at < $2
        GROUP BY 1, 2, 3, 4
        """,
        start, end,
    )
    counts: dict[tuple[str | None, str | None, int, int], int] = defaultdict(int)
    for r in rows:
        day = ((end - r["back"]) // timedelta(hours=1) - 1) // 24
        clock = r["clock"].astimezone(UTC)
        counts[(r["category"], r["subcategory"], day, clock.weekday() * 24 + clock.hour)] += r["n"]
    return [(category, subcategory, day, how, n) for (category, subcategory, day, how), n in counts.items()]


async def error_code_counts(conn: Connection, codes: list[str], start: datetime, end: datetime) -> dict[str, int]:
    """Cases per code created in [start, end), among `codes`."""
    rows = await conn.fetch(
        """
        SELECT code, count(*)::int AS n
        FROM cases, unnest(error_codes) AS code
        WHERE error_codes <> '{}' AND error_codes && $1::text[] AND created_at >= $2 AND created_at < $3
          AND code = ANY($1::text[])
        GROUP BY code
        """,
        codes, start, end,
    )
    return {r["code"]: r["n"] for r in rows}


async def known_error_codes(conn: Connection) -> dict[str, str | None]:
    return {r["error_code"].upper(): r["severity"] for r in await conn.fetch("SELECT error_code, severity FROM error_codes")}


async def case_vectors(conn: Connection, start: datetime, end: datetime, model: str) -> dict[UUID, np.ndarray]:
    """The embeddings, by `model`, of the cases created in (start, end]."""
    rows = await conn.fetch(
        """
        SELECT e.case_id, vector_send(e.embedding) AS embedding FROM cases c JOIN case_embeddings e USING (case_id)
        WHERE c.created_at > $1 AND c.created_at <= $2 AND e.model = $3
        """,
        start, end, model,
    )
    return dict(zip([r["case_id"] for r in rows], _matrix([r["embedding"] for r in rows]), strict=True))


async def cases_without_vectors(conn: Connection, start: datetime, end: datetime, model: str,
                                limit: int) -> list[tuple[UUID, str]]:
    """(case id, text to embed) of the cases of (start, end] not yet embedded by `model`."""
    rows = await conn.fetch(
        """
        SELECT c.case_id, left(coalesce(c.subject || E'\n', '') || c.description, 2000) AS text
        FROM cases c LEFT JOIN case_embeddings e ON e.case_id = c.case_id AND e.model = $3
        WHERE c.created_at > $1 AND c.created_at <= $2 AND e.case_id IS NULL
        ORDER BY c.created_at LIMIT $4
        """,
        start, end, model, limit,
    )
    return [(r["case_id"], r["text"]) for r in rows]


async def baseline_sample(conn: Connection, start: datetime, end: datetime, model: str,
                          target: int) -> tuple[np.ndarray, float]:
    """Embeddings of about `target` cases drawn at random from [start, end), and the fraction of
    the period's cases they stand for: those drawn with a vector over all the period's cases (pages
    are drawn, not rows, so the count drawn is measured, not assumed)."""
    total = await conn.fetchval("SELECT count(*) FROM cases WHERE created_at >= $1 AND created_at < $2", start, end)
    if not total:
        return np.zeros((0, 0), dtype=np.float32), 1.0
    percent = min(100.0, 100.0 * target / total)
    if percent >= 100.0:
        sql = """SELECT vector_send(e.embedding) AS embedding FROM cases c JOIN case_embeddings e USING (case_id)
                 WHERE c.created_at >= $1 AND c.created_at < $2 AND e.model = $3"""
        rows = await conn.fetch(sql, start, end, model)
    else:
        # Pages at random, the same ones for the same inputs: a replay finds the same baseline.
        sql = """SELECT vector_send(e.embedding) AS embedding FROM cases c TABLESAMPLE SYSTEM ($4) REPEATABLE (7)
                 JOIN case_embeddings e USING (case_id)
                 WHERE c.created_at >= $1 AND c.created_at < $2 AND e.model = $3"""
        rows = await conn.fetch(sql, start, end, model, percent)
    return _matrix([r["embedding"] for r in rows]), len(rows) / total


def _matrix(sent: list[bytes]) -> np.ndarray:
    """vector_send() outputs of one dimension (int16 dimensions, int16 unused, big-endian float4s)
    as one float32 matrix: decoded one Vector at a time, 65k of them took 2 s of a 1M-case pass."""
    if not sent:
        return np.zeros((0, 0), np.float32)
    dims = int.from_bytes(sent[0][:2], "big")
    raw = np.frombuffer(b"".join(sent), dtype=np.uint8).reshape(len(sent), 4 + 4 * dims)
    return raw[:, 4:].copy().view(">f4").astype(np.float32)


async def critical_cases(conn: Connection) -> list[tuple[str, UUID, str | None, list[str]]]:
    """(fingerprint, case id, subject, codes) of the critical-case alerts still open whose case still
    waits for a person: not taken, not done."""
    rows = await conn.fetch(
        """
        SELECT a.fingerprint, c.case_id, c.subject, c.error_codes
        FROM proactive_alerts a
        JOIN cases c ON c.case_id = substr(a.fingerprint, length('critical_case:') + 1)::uuid
        WHERE a.status <> 'resolved' AND a.fingerprint LIKE 'critical\\_case:%'
          AND c.owner_slack_user_id IS NULL AND c.status NOT IN ('resolved', 'closed')
        """,
    )
    return [(r["fingerprint"], r["case_id"], r["subject"], r["error_codes"]) for r in rows]


# ---- the lifecycle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAlert:
    alert_id: UUID
    fingerprint: str
    kind: str
    severity: str
    signals: dict[str, Any]  # fingerprint → the signal as stored
    case_ids: frozenset[UUID]


async def open_alerts(conn: Connection) -> list[OpenAlert]:
    """Every alert not resolved, oldest first, locked for the caller's transaction."""
    rows = await conn.fetch(
        """
        SELECT a.alert_id, a.fingerprint, a.alert_type AS kind, a.severity, a.evidence,
               coalesce((SELECT array_agg(e.case_id) FROM alert_evidence e
                         WHERE e.alert_id = a.alert_id AND e.case_id IS NOT NULL), '{}') AS case_ids
        FROM proactive_alerts a WHERE a.status <> 'resolved'
        ORDER BY a.first_seen_at, a.alert_id
        FOR UPDATE OF a
        """,
    )
    alerts = []
    for r in rows:
        evidence = json.loads(r["evidence"]) if isinstance(r["evidence"], str) else r["evidence"]
        signals = {s["fingerprint"]: s for s in evidence.get("signals", []) if "fingerprint" in s}
        alerts.append(OpenAlert(r["alert_id"], r["fingerprint"], r["kind"], r["severity"], signals,
                                frozenset(r["case_ids"])))
    return alerts


@dataclass(frozen=True)
class AlertFields:
    kind: str
    severity: str
    title: str
    description: str
    signals: list[dict[str, Any]]
    category: str | None
    subcategory: str | None
    metric_name: str | None
    error_code: str | None


async def create_alert(conn: Connection, fingerprint: str, fields: AlertFields, now: datetime) -> UUID | None:
    """A new open alert; None if an open alert of that fingerprint exists."""
    alert_id: UUID | None = await conn.fetchval(
        """
        INSERT INTO proactive_alerts (fingerprint, alert_type, severity, title, description, evidence, first_seen_at,
                                      last_seen_at, category, subcategory, metric_name, error_code)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7, $8, $9, $10, $11)
        ON CONFLICT (fingerprint) WHERE status <> 'resolved' DO NOTHING
        RETURNING alert_id
        """,
        fingerprint, fields.kind, fields.severity, fields.title, fields.description,
        json.dumps({"signals": fields.signals}), now, fields.category, fields.subcategory, fields.metric_name,
        fields.error_code,
    )
    return alert_id


async def add_evidence(conn: Connection, alert_id: UUID, items: list[tuple[str, UUID | None, dict[str, Any]]],
                       now: datetime) -> int:
    """Attach evidence (key, case id, details); returns how many were new to the alert, not
    counting signal keys (a signal is news through its cases or points)."""
    if not items:
        return 0
    added: int = await conn.fetchval(
        """
        WITH added AS (
            INSERT INTO alert_evidence (alert_id, evidence_key, case_id, details, seen_at)
            SELECT $1, k, c, d::jsonb, $5 FROM unnest($2::text[], $3::uuid[], $4::text[]) AS t(k, c, d)
            ON CONFLICT DO NOTHING
            RETURNING evidence_key
        )
        SELECT count(*)::int FROM added WHERE evidence_key NOT LIKE 'signal:%'
        """,
        alert_id, [k for k, _, _ in items], [c for _, c, _ in items], [json.dumps(d) for _, _, d in items], now,
    )
    return added


async def update_alert(conn: Connection, alert_id: UUID, fields: AlertFields, now: datetime, *, changed: bool) -> None:
    """The alert's signal fired again at `now`; with `changed`, what it shows changed too (Slack edits it)."""
    await conn.execute(
        """
        UPDATE proactive_alerts a SET
            last_seen_at = greatest(a.last_seen_at, $2), updated_at = now(),
            alert_type = CASE WHEN $3 THEN $4 ELSE a.alert_type END,
            severity = CASE WHEN $3 THEN $5 ELSE a.severity END,
            title = CASE WHEN $3 THEN $6 ELSE a.title END,
            description = CASE WHEN $3 AND a.summary_source = 'template' THEN $7 ELSE a.description END,
            evidence = CASE WHEN $3 THEN jsonb_build_object('signals', $8::jsonb) ELSE a.evidence END,
            category = coalesce(a.category, $9), subcategory = coalesce(a.subcategory, $10),
            metric_name = coalesce(a.metric_name, $11), error_code = coalesce(a.error_code, $12),
            revision = a.revision + CASE WHEN $3 THEN 1 ELSE 0 END
        WHERE a.alert_id = $1
        """,
        alert_id, now, changed, fields.kind, fields.severity, fields.title, fields.description,
        json.dumps(fields.signals), fields.category, fields.subcategory, fields.metric_name, fields.error_code,
    )


async def count_evidence(conn: Connection, alert_id: UUID) -> None:
    """The alert's count and affected customers, from its evidence."""
    await conn.execute(
        """
        UPDATE proactive_alerts a SET
            occurrence_count = greatest(1, (SELECT count(*) FROM alert_evidence e
                                            WHERE e.alert_id = a.alert_id AND e.evidence_key NOT LIKE 'signal:%')),
            affected_customers = coalesce((SELECT array_agg(DISTINCT c.customer_id) FROM alert_evidence e
                                           JOIN cases c USING (case_id) WHERE e.alert_id = a.alert_id), '{}')
        WHERE a.alert_id = $1
        """,
        alert_id,
    )


async def resolve_quiet(conn: Connection, quiet_since: datetime, now: datetime, keep: list[UUID]) -> list[UUID]:
    """Resolve the open alerts whose signal has not fired since `quiet_since` (but those in `keep`)."""
    rows = await conn.fetch(
        """
        UPDATE proactive_alerts SET status = 'resolved', resolved_by = 'auto', resolved_at = $2,
                                    revision = revision + 1, updated_at = now()
        WHERE status <> 'resolved' AND alert_type <> 'budget' AND last_seen_at <= $1 AND NOT (alert_id = ANY($3::uuid[]))
        RETURNING alert_id
        """,
        quiet_since, now, keep,
    )
    return [r["alert_id"] for r in rows]


async def due_reminders(conn: Connection, due_before: datetime, now: datetime) -> list[UUID]:
    """Open, unacknowledged alerts last announced before `due_before`: marked reminded at `now`."""
    rows = await conn.fetch(
        """
        UPDATE proactive_alerts SET reminded_at = $2
        WHERE status = 'open' AND coalesce(reminded_at, first_seen_at) <= $1
          AND EXISTS (SELECT 1 FROM slack_messages m WHERE m.alert_id = proactive_alerts.alert_id AND m.purpose = 'alert')
        RETURNING alert_id
        """,
        due_before, now,
    )
    return [r["alert_id"] for r in rows]


async def unposted_alerts(conn: Connection) -> list[UUID]:
    """Alerts whose Slack message is behind: never posted, or changed since. A critical case's alert
    is posted by its own job; only its changes are left to the post job."""
    rows = await conn.fetch(
        """
        SELECT a.alert_id FROM proactive_alerts a
        WHERE a.posted_revision < a.revision
          AND (a.alert_type <> 'critical_case'
               OR EXISTS (SELECT 1 FROM slack_messages m WHERE m.alert_id = a.alert_id AND m.purpose = 'alert'))
        """,
    )
    return [r["alert_id"] for r in rows]


# ---- reading alerts back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    alert_id: UUID
    fingerprint: str
    kind: str
    severity: str
    status: str
    title: str
    description: str | None
    root_cause_hypothesis: str | None
    evidence_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    category: str | None
    subcategory: str | None
    metric: str | None
    error_code: str | None
    jira_issue_key: str | None
    acknowledged_by: str | None
    resolved_by: str | None
    signals: list[dict[str, Any]]
    case_ids: list[UUID]
    short_ids: list[int]


_ALERT = """
SELECT a.alert_id, a.fingerprint, a.alert_type AS kind, a.severity, a.status, a.title, a.description,
       a.root_cause_hypothesis, a.occurrence_count AS evidence_count, a.first_seen_at, a.last_seen_at,
       a.category, a.subcategory, a.metric_name AS metric, a.error_code, a.jira_issue_key,
       a.acknowledged_by, a.resolved_by, a.evidence->'signals' AS signals,
       coalesce(ev.case_ids, '{}') AS case_ids, coalesce(ev.short_ids, '{}') AS short_ids
FROM proactive_alerts a
LEFT JOIN LATERAL (
    SELECT array_agg(c.case_id ORDER BY c.created_at) AS case_ids, array_agg(c.short_id ORDER BY c.created_at) AS short_ids
    FROM alert_evidence e JOIN cases c USING (case_id) WHERE e.alert_id = a.alert_id
) ev ON true
"""


def _alert_row(r: Any) -> AlertRow:
    row = dict(r)
    signals = row.pop("signals")
    return AlertRow(**row, signals=json.loads(signals) if isinstance(signals, str) else (signals or []))


async def alerts_by_id(conn: Connection, alert_ids: list[UUID]) -> list[AlertRow]:
    rows = await conn.fetch(_ALERT + " WHERE a.alert_id = ANY($1::uuid[]) ORDER BY a.first_seen_at", alert_ids)
    return [_alert_row(r) for r in rows]


async def list_alerts(conn: Connection, *, open_only: bool, limit: int) -> list[AlertRow]:
    rows = await conn.fetch(
        _ALERT + " WHERE ($1 = false OR a.status <> 'resolved') ORDER BY a.last_seen_at DESC, a.alert_id LIMIT $2",
        open_only, limit,
    )
    return [_alert_row(r) for r in rows]


async def alert_by_fingerprint(conn: Connection, fingerprint: str) -> AlertRow | None:
    """The newest alert with that fingerprint (an open one if any)."""
    row = await conn.fetchrow(
        _ALERT + " WHERE a.fingerprint = $1 ORDER BY (a.status <> 'resolved') DESC, a.created_at DESC LIMIT 1",
        fingerprint,
    )
    return _alert_row(row) if row else None
