"""A critical case's alert (spec §1, step 3: critical, or an unhappy VIP, goes to a person at once
with an alert in the alerts channel). Opened as a proactive alert once per case, with the case as
its evidence, so detection can attach more; posted once.

The alert is claimed and posted in one transaction, committed only after the post succeeded: a
failed post leaves nothing behind and the job is retried. A process that dies between Slack's
answer and the commit posts it once more on the retry: for an alert, once too often beats never."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg

from db import alerts as alerts_db
from db.cases import DONE, CaseNotFound
from db.pool import transaction

UrgentCaseFacts = alerts_db.UrgentCaseFacts

# Posts the alert; returns where it landed (channel, ts).
Post = Callable[[UrgentCaseFacts], Awaitable[tuple[str, str]]]


async def alert_once(pool: asyncpg.Pool, case_id: UUID, post: Post) -> bool:
    """Open the case's alert and post it with `post`; False if it was not posted now."""
    async with transaction(pool) as conn:
        facts = await alerts_db.urgent_case(conn, case_id)
        if facts is None:
            raise CaseNotFound(case_id)
        # A late retry, for a case someone has taken already or that is done: no alert.
        if facts.owner is not None or facts.status in DONE:
            return False
        alert_id = await alerts_db.open_urgent_alert(conn, case_id)  # locked until this commits
        posted = await alerts_db.urgent_case(conn, case_id)
        if alert_id is None or posted is None or posted.alert_ts is not None:
            return False
        channel, ts = await post(posted)
        await alerts_db.save_alert_message(conn, alert_id, channel, ts)
    return True


async def urgent_case(pool: asyncpg.Pool, case_id: UUID) -> UrgentCaseFacts | None:
    async with pool.acquire() as conn:
        return await alerts_db.urgent_case(conn, case_id)
