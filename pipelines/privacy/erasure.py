"""Erasing a customer on request: their personal data goes in one transaction, with the job that
rewrites the Slack messages about their cases queued in it, so neither happens without the other."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog

from db import erasure
from db import jobs as job_queue
from db.erasure import Removed
from pipelines.jobs import ErasureNotice, JobName, SlackMessageRef

log = structlog.get_logger(__name__)


class UnknownCustomer(LookupError):
    pass


@dataclass(frozen=True)
class Erasure:
    customer_id: UUID
    cases: int
    removed: list[Removed]
    slack_messages: int  # rewritten by the queued ERASURE_NOTICE job


class _Preview(Exception):
    """Raised inside the transaction to roll a preview back."""

    def __init__(self, result: Erasure) -> None:
        self.result = result


async def erase_customer(pool: asyncpg.Pool, email: str, *, dry_run: bool = False) -> Erasure:
    """Erase the customer with this address. A dry run does the same work and rolls it back, so it
    reports exactly what would go. Raises UnknownCustomer (and changes nothing) for an unknown address."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            customer = await erasure.find_customer(conn, email)
            if customer is None:
                raise UnknownCustomer(f"no customer with the address {email!r}")
            messages = await erasure.slack_messages(conn, customer.case_ids)
            removed = await erasure.erase(conn, customer)
            if messages:
                notice = ErasureNotice(messages=[SlackMessageRef(channel=c, ts=t) for c, t in messages])
                await job_queue.enqueue(conn, JobName.ERASURE_NOTICE, notice.payload())
            result = Erasure(customer.customer_id, len(customer.case_ids), removed, len(messages))
            if dry_run:
                raise _Preview(result)
    except _Preview as preview:
        return preview.result
    log.info("privacy.customer_erased", customer_id=str(result.customer_id), cases=result.cases,
             slack_messages=result.slack_messages, **{f"{r.table}_{r.action}": r.rows for r in removed})
    return result
