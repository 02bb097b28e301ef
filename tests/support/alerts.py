"""Proactive alerts in a test's database, written with plain SQL as the detection pass writes them:
the alert row with its signals, its cases (made through intake) as evidence, and their customers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from pipelines.intake.webhook import intake_webhook
from pipelines.models import IntakeRequest

VOLUME_SIGNAL: dict[str, Any] = {
    "kind": "volume", "fingerprint": "volume:billing/refund_request", "title": "Refund requests spiking",
    "observed": 14, "expected": 1.2, "z": 8.3, "threshold": None, "value": None, "unit": None,
    "category": "billing", "subcategory": "refund_request", "window_minutes": 60,
}
METRIC_SIGNAL: dict[str, Any] = {
    "kind": "metric", "fingerprint": "metric:api_error_rate", "title": "API error rate high",
    "value": 7.2, "threshold": 5, "unit": "%", "metric": "api_error_rate", "service": "api-gateway",
    "window_minutes": 60,
}
ERROR_CODE_SIGNAL: dict[str, Any] = {
    "kind": "error_code", "fingerprint": "error_code:ERR_AUTH_1042", "title": "ERR_AUTH_1042 quoted",
    "observed": 9, "expected": 0.4, "error_code": "ERR_AUTH_1042", "window_minutes": 60,
}


@dataclass(frozen=True)
class CaseSpec:
    subject: str
    email: str = "eve@example.com"
    name: str | None = "Eve Example"
    tier: str = "standard"
    text: str = "The refund I was promised has not arrived."


@dataclass(frozen=True)
class MadeAlert:
    alert_id: UUID
    case_ids: list[UUID]
    short_ids: list[int]


DEFAULT_CASES = (
    CaseSpec("Refund missing", "ada@example.com", "Ada Lovelace", "enterprise"),
    CaseSpec("Where is my refund?", "bob@example.com", "Bob Builder", "premium"),
    CaseSpec("Refund not received", "cy@example.com", "Cy Young"),
)


async def make_cases(pool: asyncpg.Pool, specs: tuple[CaseSpec, ...] | list[CaseSpec]) -> list[UUID]:
    case_ids = []
    for i, spec in enumerate(specs):
        request = IntakeRequest(customer_email=spec.email, customer_name=spec.name, subject=spec.subject[:500],
                                description=f"{spec.text} ({i})")
        case_ids.append((await intake_webhook(pool, request, replay_key=f"alert-case-{uuid.uuid4().hex}")).case_id)
        await pool.execute("UPDATE customers SET account_tier = $2 WHERE email = $1", spec.email, spec.tier)
    return case_ids


async def make_alert(
    pool: asyncpg.Pool,
    *,
    kind: str = "volume",
    severity: str = "high",
    title: str = "Refund requests spiking in billing / refund_request",
    description: str | None = "14 refund requests in the last hour against 1.2 expected.",
    hypothesis: str | None = None,
    signals: list[dict[str, Any]] | None = None,
    cases: tuple[CaseSpec, ...] | list[CaseSpec] = DEFAULT_CASES,
    status: str = "open",
    fingerprint: str | None = None,
    summary_source: str = "template",
    category: str | None = "billing",
    first_seen_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> MadeAlert:
    case_ids = await make_cases(pool, cases)
    signals = [VOLUME_SIGNAL] if signals is None else signals
    first = first_seen_at or datetime.now(UTC) - timedelta(minutes=30)
    customers = await pool.fetchval("SELECT coalesce(array_agg(DISTINCT customer_id), '{}') FROM cases "
                                    "WHERE case_id = ANY($1::uuid[])", case_ids)
    alert_id = await pool.fetchval(
        """
        INSERT INTO proactive_alerts (fingerprint, alert_type, severity, status, title, description,
            root_cause_hypothesis, affected_customers, evidence, occurrence_count, category, summary_source,
            first_seen_at, last_seen_at, resolved_at, metadata)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13::timestamptz, $13::timestamptz + interval '20 minutes',
                CASE WHEN $4 = 'resolved' THEN now() END, $14::jsonb)
        RETURNING alert_id
        """,
        fingerprint or f"{kind}:{signals[0]['fingerprint'] if signals else 'test'}", kind, severity, status, title,
        description, hypothesis, customers, json.dumps({"signals": signals}), max(1, len(case_ids) + len(signals)),
        category, summary_source, first, json.dumps(metadata or {}),
    )
    for case_id in case_ids:
        await pool.execute(
            "INSERT INTO alert_evidence (alert_id, evidence_key, case_id, details) "
            "VALUES ($1, 'case:' || $2::uuid, $2, jsonb_build_object('case_id', $2::uuid))",
            alert_id, case_id,
        )
    for signal in signals:
        await pool.execute(
            "INSERT INTO alert_evidence (alert_id, evidence_key, details) VALUES ($1, 'signal:' || $2::text, $3::jsonb)",
            alert_id, signal["fingerprint"], json.dumps(signal),
        )
    short_ids = [await pool.fetchval("SELECT short_id FROM cases WHERE case_id = $1", c) for c in case_ids]
    return MadeAlert(alert_id, case_ids, short_ids)


async def bump(pool: asyncpg.Pool, alert_id: UUID, **columns: Any) -> int:
    """Change the alert as the detection pass would (new evidence, a new figure): a new revision."""
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
    return await pool.fetchval(
        f"UPDATE proactive_alerts SET {sets}{', ' if sets else ''}revision = revision + 1, last_seen_at = now() "
        "WHERE alert_id = $1 RETURNING revision",
        alert_id, *columns.values(),
    )


async def alert_row(pool: asyncpg.Pool, alert_id: UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM proactive_alerts WHERE alert_id = $1", alert_id)
    assert row is not None
    return row
