"""Storing what arrives: customers found or created by email, cases, and their first interaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from db.connection import Connection


@dataclass(frozen=True)
class StoredCase:
    case_id: UUID
    short_id: int
    status: str
    created: bool  # False: the external id or message id was seen before, nothing was written


# One round trip for customer, case and first interaction. ON CONFLICT DO NOTHING on the case
# covers both idempotency keys (channel + external_id, and the email Message-ID). `later` ($16 'on')
# skips pgqueuer's NOTIFY in this transaction (db/migrations/0024); it is selected first so that it
# is set, also for a duplicate, before the statement's triggers run.
_CREATE = """
WITH later AS (
    SELECT set_config('cx.notify_later', $16::text, true)
), customer AS (
    INSERT INTO customers (email, name, metadata)
    VALUES ($1, $2, jsonb_build_object('source', 'auto_created', 'channel', $3::text))
    ON CONFLICT ((lower(email))) DO UPDATE SET name = coalesce(customers.name, EXCLUDED.name)
    RETURNING customer_id
), new_case AS (
    INSERT INTO cases (customer_id, channel, subject, description, severity, product, product_version,
                       environment, external_id, email_message_id, gmail_thread_id, metadata)
    SELECT customer_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb FROM customer
    ON CONFLICT DO NOTHING
    RETURNING case_id, short_id, status
), first_interaction AS (
    INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, external_message_id)
    SELECT case_id, 'customer', $1, $14, $5, $11 FROM new_case
), triage_job AS (
    -- The case's first job, in the same statement: one round trip and no explicit transaction
    -- on the intake hot path. This is pgqueuer's own enqueue (its table is db/migrations/0003,
    -- pinned with the library; tests/test_migrations.py checks they agree).
    INSERT INTO pgqueuer (priority, status, entrypoint, payload, dedupe_key)
    SELECT 0, 'queued', $15, convert_to(json_build_object('case_id', case_id)::text, 'UTF8'), 'triage:' || case_id
    FROM new_case
    WHERE $15::text IS NOT NULL
)
SELECT case_id, short_id, status FROM later LEFT JOIN new_case ON true
"""

_EXISTING = """
SELECT case_id, short_id, status FROM cases
WHERE ($1::text IS NOT NULL AND channel = $2 AND external_id = $1)
   OR ($3::text IS NOT NULL AND email_message_id = $3)
LIMIT 1
"""


async def create_case(
    conn: Connection,
    *,
    customer_email: str,
    customer_name: str | None,
    channel: str,
    subject: str | None,
    description: str,
    interaction_type: str,
    severity: str | None = None,
    product: str | None = None,
    product_version: str | None = None,
    environment: str | None = None,
    external_id: str | None = None,
    email_message_id: str | None = None,
    gmail_thread_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    triage_entrypoint: str | None = None,
    notify_later: bool = False,
) -> StoredCase:
    """Store a new case (status `new`) with its first triage job when `triage_entrypoint` is
    given, or return the one already stored under the same key. Atomic on its own. With
    `notify_later` the workers are not told of the job (nor of any other this transaction
    enqueues); the caller calls `wake_workers` once it has committed."""
    row = await conn.fetchrow(
        _CREATE,
        customer_email.lower(),
        customer_name,
        channel,
        subject,
        description,
        severity,
        product,
        product_version,
        environment,
        external_id,
        email_message_id,
        gmail_thread_id,
        json.dumps(metadata or {}),
        interaction_type,
        triage_entrypoint,
        "on" if notify_later else "off",
    )
    if row is not None and row["case_id"] is not None:
        return StoredCase(row["case_id"], row["short_id"], row["status"], created=True)
    existing = await conn.fetchrow(_EXISTING, external_id, channel, email_message_id)
    if existing is None:
        # A conflict with no matching row means a concurrent insert has not committed yet;
        # the caller's retry (or the client's) will find it.
        raise asyncpg.UniqueViolationError("case key taken by a transaction still in flight")
    return StoredCase(existing["case_id"], existing["short_id"], existing["status"], created=False)


# What pgqueuer's trigger would have sent (its listeners wake on any table_changed_event). The
# notification carries no data, so its commit need not wait for the disk: a crash loses only the
# wake-up, and the workers find the job at their next poll.
_WAKE_WORKERS = """
SELECT set_config('synchronous_commit', 'off', true),
       pg_notify('ch_pgqueuer', json_build_object('channel', 'ch_pgqueuer', 'operation', 'insert', 'sent_at', now(),
                                                  'table', 'pgqueuer', 'type', 'table_changed_event')::text)
"""


async def wake_workers(conn: Connection) -> None:
    await conn.execute(_WAKE_WORKERS)


@dataclass(frozen=True)
class ThreadCase:
    case_id: UUID
    short_id: int
    status: str
    resolved_at: datetime | None
    closed_at: datetime | None


# A reply names its ancestors in In-Reply-To/References; any of them may be the case's first
# message or a later one (ours or the customer's). Gmail's thread id is a second way in.
_THREAD = """
SELECT c.case_id, c.short_id, c.status, c.resolved_at, c.closed_at
FROM cases c
WHERE c.email_message_id = ANY($1::text[])
   OR ($2::text IS NOT NULL AND c.gmail_thread_id = $2)
   OR c.case_id IN (SELECT i.case_id FROM case_interactions i WHERE i.external_message_id = ANY($1::text[]))
ORDER BY c.created_at DESC
LIMIT 1
"""


async def find_thread_case(
    conn: Connection, message_ids: list[str], gmail_thread_id: str | None
) -> ThreadCase | None:
    row = await conn.fetchrow(_THREAD, message_ids, gmail_thread_id)
    return ThreadCase(**dict(row)) if row else None


async def append_interaction(
    conn: Connection,
    case_id: UUID,
    *,
    actor_id: str,
    interaction_type: str,
    message: str,
    external_message_id: str | None,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Add a customer message to a case; False if that message id is already on record."""
    inserted = await conn.fetchval(
        "INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message, "
        "external_message_id, metadata, created_at) VALUES ($1, 'customer', $2, $3, $4, $5, $6::jsonb, clock_timestamp()) "
        "ON CONFLICT DO NOTHING RETURNING interaction_id",
        case_id, actor_id, interaction_type, message, external_message_id, json.dumps(metadata or {}),
    )
    return inserted is not None


async def message_seen(conn: Connection, message_id: str) -> UUID | None:
    """The case that already holds this RFC 822 message, as first message or follow-up."""
    case_id: UUID | None = await conn.fetchval(
        "SELECT case_id FROM cases WHERE email_message_id = $1 "
        "UNION ALL SELECT case_id FROM case_interactions WHERE external_message_id = $1 LIMIT 1",
        message_id,
    )
    return case_id
