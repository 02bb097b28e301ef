"""Incidents as the detection pass leaves them (the alert contract): a proactive_alerts row with its
signals, its cases as evidence and its affected customers, inserted with plain SQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from db.pool import transaction

TEMPLATE = "14 billing/refund_request cases in the last 60 minutes, where 1.2 were expected."
VOLUME_SIGNAL: dict[str, Any] = {
    "kind": "volume", "fingerprint": "volume:billing/refund_request", "title": "Refund requests spiking",
    "observed": 14, "expected": 1.2, "z": 8.3, "threshold": None, "value": None, "unit": None,
    "category": "billing", "subcategory": "refund_request", "window_minutes": 60,
}


@dataclass(frozen=True)
class IncidentCase:
    subject: str | None
    description: str
    tier: str = "standard"


@dataclass(frozen=True)
class Incident:
    alert_id: uuid.UUID
    case_ids: list[uuid.UUID] = field(default_factory=list)


async def insert_incident(
    pool: asyncpg.Pool,
    cases: list[IncidentCase],
    *,
    kind: str = "volume",
    severity: str = "high",
    status: str = "open",
    title: str = "Refund requests spiking",
    signals: list[dict[str, Any]] | None = None,
    fingerprint: str | None = None,
) -> Incident:
    """An alert of `kind` with a template summary, the cases as evidence (the last one newest) and
    each case's customer among the affected customers."""
    now = datetime.now(UTC)
    case_ids: list[uuid.UUID] = []
    customers: list[uuid.UUID] = []
    async with transaction(pool) as conn:
        for n, case in enumerate(cases):
            customer = await conn.fetchval(
                "INSERT INTO customers (email, name, account_tier) VALUES ($1, $2, $3) RETURNING customer_id",
                f"customer{n}-{uuid.uuid4().hex[:6]}@example.com", f"Customer {n}", case.tier)
            case_ids.append(await conn.fetchval(
                "INSERT INTO cases (customer_id, channel, subject, description, category, subcategory, priority) "
                "VALUES ($1, 'email', $2, $3, 'billing', 'refund_request', 'high') RETURNING case_id",
                customer, case.subject, case.description))
            customers.append(customer)
        alert_id = await conn.fetchval(
            """
            INSERT INTO proactive_alerts (fingerprint, alert_type, severity, status, title, description,
                                          affected_customers, evidence, occurrence_count, first_seen_at,
                                          last_seen_at, category, subcategory, resolved_at, resolved_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, 'billing', 'refund_request',
                    CASE WHEN $4 = 'resolved' THEN now() END, CASE WHEN $4 = 'resolved' THEN 'auto' END)
            RETURNING alert_id
            """,
            fingerprint or f"{kind}:billing/refund_request", kind, severity, status, title, TEMPLATE, customers,
            json.dumps({"signals": signals if signals is not None else [VOLUME_SIGNAL]}),
            max(len(cases), 1), now - timedelta(minutes=50), now)
        for n, case_id in enumerate(case_ids):
            await conn.execute(
                "INSERT INTO alert_evidence (alert_id, evidence_key, case_id, details, seen_at) "
                "VALUES ($1, 'case:' || $2::uuid, $2::uuid, '{}', $3)",
                alert_id, case_id, now - timedelta(minutes=len(case_ids) - n))
    return Incident(alert_id, case_ids)


async def alert_row(pool: asyncpg.Pool, alert_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM proactive_alerts WHERE alert_id = $1", alert_id)
    assert row is not None
    return row
