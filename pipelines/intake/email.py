"""Email intake, shared by Gmail sync and file imports: a new case, a follow-up, or a logged skip."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from db import intake as intake_db
from db.cases import REOPENED_BY_REPLY, ActorType, CaseStatus, transition
from db.connection import Connection
from db.pool import transaction
from pipelines.intake.email_parse import ParsedEmail, Skipped, parse_email
from pipelines.intake.webhook import stored_outcome
from pipelines.jobs import JobName
from pipelines.models import Intake, IntakeOutcome
from pipelines.queue import queue_case_job

log = structlog.get_logger(__name__)

@dataclass(frozen=True)
class EmailSource:
    channel: str = "email"  # "import" for files
    gmail_message_id: str | None = None
    gmail_thread_id: str | None = None


def stable_message_id(parsed: ParsedEmail, raw: bytes) -> str:
    """The Message-ID, or one derived from the bytes, so re-importing the same file is a no-op."""
    return parsed.message_id or f"<sha256-{hashlib.sha256(raw).hexdigest()[:40]}@cx-catalyst>"


async def intake_email(
    pool: asyncpg.Pool,
    raw: bytes,
    *,
    source: EmailSource = EmailSource(),
    own_addresses: Collection[str] = (),
    reopen_window: timedelta = timedelta(days=7),
    now: datetime | None = None,
) -> Intake:
    parsed = parse_email(raw, own_addresses=own_addresses)
    if isinstance(parsed, Skipped):
        log.info("intake.email_skipped", reason=parsed.reason.value, detail=parsed.detail)
        return Intake(outcome=IntakeOutcome.SKIPPED, reason=f"{parsed.reason.value}: {parsed.detail}")
    message_id = stable_message_id(parsed, raw)
    metadata: dict[str, object] = {
        "from_name": parsed.from_name,
        "attachments": [a.model_dump() for a in parsed.attachments],
        "charset_problems": parsed.charset_problems,
        "gmail_message_id": source.gmail_message_id,
    }
    ancestors = [m for m in [parsed.in_reply_to, *parsed.references] if m]
    async with transaction(pool) as conn:
        existing = await intake_db.message_seen(conn, message_id)
        if existing is not None:
            return Intake(outcome=IntakeOutcome.DUPLICATE, case_id=existing, reason="message already on record")
        thread = await intake_db.find_thread_case(conn, ancestors, source.gmail_thread_id)
        if thread is not None and _within(thread, reopen_window, now):
            return await _follow_up(conn, thread, parsed, message_id, metadata)
        stored = await intake_db.create_case(
            conn,
            customer_email=parsed.from_address,
            customer_name=parsed.from_name,
            channel=source.channel,
            subject=parsed.subject or None,
            description=parsed.text,
            interaction_type="email_in" if source.channel == "email" else "import",
            email_message_id=message_id,
            gmail_thread_id=source.gmail_thread_id,
            metadata=metadata | ({"previous_case": str(thread.case_id)} if thread else {}),
            triage_entrypoint=JobName.TRIAGE,
        )
    return stored_outcome(stored)


def _within(thread: intake_db.ThreadCase, window: timedelta, now: datetime | None) -> bool:
    """A reply joins its case unless the case was finished longer ago than the reopen window."""
    finished_at = thread.closed_at or thread.resolved_at
    if thread.status not in REOPENED_BY_REPLY or finished_at is None:
        return True
    return (now or datetime.now(UTC)) - finished_at <= window


async def _follow_up(
    conn: Connection,
    thread: intake_db.ThreadCase,
    parsed: ParsedEmail,
    message_id: str,
    metadata: dict[str, object],
) -> Intake:
    await intake_db.append_interaction(
        conn,
        thread.case_id,
        actor_id=parsed.from_address,
        interaction_type="email_in",
        message=parsed.text,
        external_message_id=message_id,
        metadata=metadata,
    )
    status = thread.status
    if status in REOPENED_BY_REPLY:
        await transition(conn, thread.case_id, CaseStatus.REOPENED, actor_type=ActorType.CUSTOMER,
                         actor_id=parsed.from_address, note="the customer wrote again")
        await transition(conn, thread.case_id, CaseStatus.HUMAN_OWNED, actor_type=ActorType.SYSTEM,
                         actor_id="router", note="reopened cases go to a person")
        await queue_case_job(conn, JobName.REVIEW_CARD, thread.case_id)
        status = CaseStatus.HUMAN_OWNED
    return Intake(outcome=IntakeOutcome.APPENDED, case_id=thread.case_id, short_id=thread.short_id, status=status)
