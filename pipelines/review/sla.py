"""The review SLA (spec §5): a pending review is reminded in its card's thread 30 minutes before it
is due, and escalated when it is due; each happens once, however many schedulers run.

Each notice is claimed and posted in one transaction, committed only after the post succeeded:
- a failed post rolls its claim back, so the next run tries it again;
- a process that dies mid-post leaves nothing committed, so the notice is not lost either. The
  price is that a crash between Slack's answer and the commit repeats the post once: for a
  reminder or an alert, once too often beats never.
Holding the review row through the post means a reviewer deciding that very review waits for the
post, bounded by the Slack client's timeout; decisions run in jobs, so no listener's ack waits.

At the timeout the review stays pending: the alert asks for someone to act, and the card's buttons
must still work when they do. Expiring the review would take them away from the people the alert
calls. The case's timeline gets a note, so the missed SLA is on the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from db import review_sla as sla_db
from db.connection import Connection
from db.pool import transaction

NoticeKind = sla_db.NoticeKind
SlaNotice = sla_db.SlaNotice

REMINDER_LEAD = timedelta(minutes=30)
# One run's work is bounded; what is left waits for the next tick.
MAX_PER_RUN = 100


class PostFailed(Exception):
    """The notice's post did not go out (the poster translates its client's errors into this)."""


Post = Callable[[SlaNotice], Awaitable[None]]


@dataclass(frozen=True)
class Failure:
    notice: SlaNotice
    error: str


@dataclass(frozen=True)
class SlaRun:
    reminders: tuple[SlaNotice, ...]  # claimed and posted
    timeouts: tuple[SlaNotice, ...]
    failed: tuple[Failure, ...]  # claimed, not posted, rolled back: the next run tries again


async def run_due(pool: asyncpg.Pool, now: datetime, post: Post, *, limit: int = MAX_PER_RUN) -> SlaRun:
    """Claim every reminder and timeout due at `now` and post each with `post`, inside its claim's
    transaction. Reminders go first, so a review at both marks in one run is reminded before it is
    escalated. Errors other than PostFailed propagate (their claim rolled back)."""
    failed: list[Failure] = []
    reminders = await _drain(pool, post, failed, limit,
                             lambda conn, skip: sla_db.claim_reminder(conn, now, REMINDER_LEAD, skip))
    timeouts = await _drain(pool, post, failed, limit, lambda conn, skip: sla_db.claim_timeout(conn, now, skip))
    return SlaRun(tuple(reminders), tuple(timeouts), tuple(failed))


Claim = Callable[[Connection, list[UUID]], Awaitable[SlaNotice | None]]


async def _drain(pool: asyncpg.Pool, post: Post, failed: list[Failure], limit: int, claim: Claim) -> list[SlaNotice]:
    done: list[SlaNotice] = []
    # A review whose post failed is skipped for the rest of this run: its claim rolled back, so
    # without this the next claim would pick it again at once.
    skip: list[UUID] = []
    while len(done) + len(skip) < limit:
        try:
            async with transaction(pool) as conn:
                notice = await claim(conn, skip)
                if notice is None:
                    break
                if notice.kind is NoticeKind.TIMEOUT:
                    await sla_db.record_timeout(conn, notice, timeout_note(notice))
                await post(notice)
        except PostFailed as exc:
            assert notice is not None
            skip.append(notice.review_id)
            failed.append(Failure(notice, str(exc)))
            continue
        done.append(notice)
    return done


def timeout_note(notice: SlaNotice) -> str:
    return (f"review not decided by its due time ({notice.due_at.isoformat(timespec='minutes')}); "
            "escalated to the alerts channel, review left open")
