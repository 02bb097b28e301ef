"""Intake: a request becomes a committed case, with its triage job, before any AI sees it."""

from __future__ import annotations

import asyncpg

from db import intake as intake_db
from pipelines.jobs import JobName
from pipelines.models import Intake, IntakeOutcome, IntakeRequest


async def intake_webhook(pool: asyncpg.Pool, request: IntakeRequest, *, replay_key: str) -> Intake:
    """Store a webhook request. Without an external_id the signature is the idempotency key,
    so a replayed request (same body, same timestamp) has no second effect."""
    metadata = dict(request.metadata)
    if request.callback_url is not None:
        metadata["callback_url"] = str(request.callback_url)
    async with pool.acquire() as conn:
        stored = await intake_db.create_case(
            conn,
            customer_email=str(request.customer_email),
            customer_name=request.customer_name,
            channel=request.channel,
            subject=request.subject,
            description=request.description,
            interaction_type="webhook_in",
            severity=request.severity,
            product=request.product,
            product_version=request.product_version,
            environment=request.environment,
            external_id=request.external_id or replay_key,
            metadata=metadata,
            triage_entrypoint=JobName.TRIAGE,
        )
    return stored_outcome(stored)


def stored_outcome(stored: intake_db.StoredCase) -> Intake:
    """What intake reports for a case it stored, or found stored under the same key."""
    return Intake(
        outcome=IntakeOutcome.CREATED if stored.created else IntakeOutcome.DUPLICATE,
        case_id=stored.case_id,
        short_id=stored.short_id,
        status=stored.status,
    )
