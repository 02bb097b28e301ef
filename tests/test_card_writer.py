"""The locks around a case's card and an outbox row: they cannot outlive the job that took them, a
writer waits for another only so long, and a worker with more jobs in flight than the pool has
connections cannot deadlock, because a job never holds one connection while it waits for a second."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.runtime.worker import Worker
from bot.settings import Settings
from bot.slack.recorder import RecordingSlack
from db import intake as intake_db
from db.pool import create_pool, transaction
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import draft_case
from pipelines.replies.outbox import approve_draft
from pipelines.review.decisions import card_writer
from pipelines.triage.step import triage_case
from tests.fakes.mailbox import SinkMailbox
from tests.support.cases import POLICY, SENDER
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

ADVISORY_LOCKS = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
# What the product's card lock is keyed by (db/locks.py hashes the name "card:<case id>").
CARD_KEY = "SELECT pg_advisory_lock(hashtextextended('card:' || $1::text, 0))"
WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


async def review_cases(pool: asyncpg.Pool, n: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """`n` cases awaiting review, each with its (extractive) draft."""
    drafter = FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85))
    made = []
    for i in range(n):
        async with transaction(pool) as conn:
            stored = await intake_db.create_case(
                conn, customer_email=f"customer{i}@example.com", customer_name=None, channel="email",
                subject=f"Card not here {i}", description="I ordered my card ten days ago; it has not arrived.",
                interaction_type="email_in", email_message_id=f"<burst-{i}@mail.example.com>",
            )
        await triage_case(pool, ScriptedLocal(0.7), TAXONOMY, THRESHOLDS, stored.case_id)
        outcome = await draft_case(pool, drafter, None, TAXONOMY, POLICY, stored.case_id)
        assert outcome is not None
        made.append((stored.case_id, outcome.draft_id))
    return made


async def test_a_card_job_cancelled_while_taking_its_lock_leaves_no_lock_behind(pool, dsn):
    (case_id, _), = await review_cases(pool, 1)
    settings = Settings(_env_file=None, slack_bot_token="xoxb-test")
    deps = with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY), RecordingSlack())
    assert deps.review is not None
    holder = await asyncpg.connect(dsn)  # another writer of the same card, on a connection of its own
    try:
        await holder.execute(CARD_KEY, str(case_id))
        job = asyncio.create_task(deps.review.post_card(case_id))
        for _ in range(500):  # the job comes to wait for the lock
            assert not job.done(), job
            if await pool.fetchval(WAITING):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the card job never waited for the lock")
        # The other writer lets go and, before the waiting job can use the lock it was just granted,
        # the job is cancelled (a worker draining, a process stopping).
        await holder.execute("SELECT pg_advisory_unlock_all()")
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    finally:
        await holder.close()
    await asyncio.sleep(0.2)  # a connection closed on the way out leaves its session as the server notices
    assert await pool.fetchval(ADVISORY_LOCKS) == 0, "the cancelled job's lock outlived it"
    # Another worker (another pool, as another process would have) posts the card at once.
    other = await create_pool(dsn, min_size=1, max_size=2)
    try:
        second = with_slack(Deps(settings=settings, pool=other, metrics=Metrics(), taxonomy=TAXONOMY), RecordingSlack())
        assert second.review is not None
        await asyncio.wait_for(second.review.post_card(case_id), 10)
    finally:
        await other.close()
    assert await pool.fetchval("SELECT count(*) FROM slack_messages WHERE case_id = $1", case_id) == 1


async def test_a_card_writer_waits_for_another_only_so_long(pool, dsn):
    case_id = uuid.uuid4()
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute(CARD_KEY, str(case_id))
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            async with card_writer(pool, case_id, wait=0.5):
                pass
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await holder.close()
    assert await pool.fetchval(ADVISORY_LOCKS) == 0


async def test_more_jobs_in_flight_than_pool_connections_do_not_deadlock(dsn):
    """WORKER_CONCURRENCY=8 on a pool of 4 (one of which the worker keeps for LISTEN): a burst of
    sends and card posts, each of which holds a lock on its connection while Slack or Gmail answers."""
    settings = Settings(_env_file=None, database_url=dsn, worker_concurrency=8, db_pool_max_size=4,
                        db_pool_min_size=1, support_email=SENDER.address, slack_bot_token="xoxb-test",
                        job_retry_base_seconds=0.2)
    pool = await create_pool(dsn, min_size=1, max_size=settings.db_pool_max_size)
    mailbox = SinkMailbox(delay=0.05)  # slow enough that every send overlaps the others
    try:
        cases = await review_cases(pool, 24)
        for _, draft_id in cases[:16]:  # 16 replies to send; the other 8 cases get their card posted
            await approve_draft(pool, draft_id, "U_REVIEWER", SENDER)
        await pool.execute("DELETE FROM pgqueuer WHERE entrypoint NOT IN ('reply.send', 'case.review_card')")
        deps = with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY, mailbox=mailbox),
                          RecordingSlack())
        worker = Worker(pool, settings, deps.metrics, job_handlers(deps))
        await worker.start()
        try:
            async def done() -> bool:
                return await pool.fetchval("SELECT count(*) FROM pgqueuer") == 0

            for _ in range(600):  # 30 s: each job takes milliseconds; a deadlock never finishes
                if await asyncio.wait_for(done(), 5):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the worker hung with jobs still queued")
        finally:
            await worker.drain(5)
        assert len(mailbox.sent) == 16
        assert await pool.fetchval("SELECT count(*) FROM reply_outbox WHERE status = 'sent'") == 16
        cards = await pool.fetchval("SELECT count(*) FROM slack_messages WHERE purpose = 'review_card'")
        assert cards == 8
    finally:
        await pool.close()
