"""Gmail sync: new inbox messages since the stored history id become cases or follow-ups.

Safe to run twice at once: a message is stored once by its Message-ID, and the cursor only moves
forward after every message up to it has been handled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import structlog

from db import gmail as gmail_db
from pipelines.intake.email import EmailSource, intake_email
from pipelines.models import IntakeOutcome
from pipelines.ports import HistoryExpired, Mailbox

log = structlog.get_logger(__name__)


@dataclass
class SyncReport:
    full_sync: bool = False
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


async def sync_mailbox(
    pool: asyncpg.Pool,
    mailbox: Mailbox,
    *,
    own_addresses: frozenset[str] = frozenset(),
    reopen_window: timedelta = timedelta(days=7),
    full_sync_limit: int = 200,
    processed_label: str | None = None,
) -> SyncReport:
    """`processed_label` goes on every message the desk took (a case or a follow-up), so a person in the
    inbox sees it; it is applied before the message is marked seen, so a failed label is retried."""
    report = SyncReport()
    async with pool.acquire() as conn:
        cursor = await gmail_db.history_id(conn, mailbox.address)
    ids: list[str]
    if cursor is not None:
        try:
            ids, latest = await mailbox.added_since(cursor)
        except HistoryExpired:
            log.warning("gmail.history_expired", mailbox=mailbox.address, history_id=cursor)
            cursor = None
    if cursor is None:
        # First run, or history too old: take the recent inbox, bounded. Dedupe makes overlap harmless.
        latest = await mailbox.current_history_id()
        ids = await mailbox.recent(full_sync_limit)
        report.full_sync = True

    async with pool.acquire() as conn:
        todo = await gmail_db.unseen(conn, ids)
    own = own_addresses | {mailbox.address.lower()}
    for message_id in todo:
        message = await mailbox.fetch(message_id)
        result = await intake_email(
            pool,
            message.raw,
            source=EmailSource(gmail_message_id=message.id, gmail_thread_id=message.thread_id),
            own_addresses=own,
            reopen_window=reopen_window,
        )
        if processed_label and result.case_id is not None:
            await mailbox.add_label(message.id, processed_label)
        outcome = "skipped" if result.outcome is IntakeOutcome.DUPLICATE else result.outcome.value
        async with pool.acquire() as conn:
            await gmail_db.mark_seen(
                conn, message.id, mailbox=mailbox.address, thread_id=message.thread_id,
                case_id=result.case_id, outcome=outcome, reason=result.reason,
            )
        report.count(result.outcome.value)
    async with pool.acquire() as conn:
        await gmail_db.save_history_id(conn, mailbox.address, latest, full_sync=report.full_sync)
    log.info("gmail.synced", mailbox=mailbox.address, full=report.full_sync, **report.outcomes)
    return report
