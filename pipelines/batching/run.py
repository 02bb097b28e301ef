"""One pass over the Message Batches (the BATCHES job, every minute, one replica at a time): find a
batch whose creation was cut off, read the batches that ended, give up on those past their deadline,
and send what waits as a new batch.

Nothing is paid for twice: a result is applied only to a request still waiting for it, in the same
transaction that records its usage; a batch is created only after its row is written, and a row
left without the provider's id is matched to the provider's batch before anything is sent again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import structlog

from db import batches as batches_db
from db import jobs
from db.connection import Connection
from db.locks import try_advisory_lock
from db.pool import transaction
from pipelines.jobs import BULK_JOBS
from pipelines.ports import BatchResult, LLMRequest, MessageBatches
from pipelines.usage import record_usage

log = structlog.get_logger(__name__)

LOCK = "llm.batches"
MAX_REQUESTS = 10_000  # per batch; the API takes up to 100,000 (and 256 MB)
MAX_ATTEMPTS = 3  # batches a request may go out in before its step runs directly
# How far apart our clock and the provider's may be when a cut-off creation is looked up.
CLOCK_SLACK = timedelta(minutes=5)


@dataclass
class BatchPass:
    """What one pass did, in requests (and batches where it says so)."""

    sent: int = 0
    answered: int = 0
    retried: int = 0
    direct: int = 0  # requests whose step now runs with a direct call
    timed_out_batches: int = 0
    recovered_batches: int = 0
    locked_out: bool = False


async def run_batches(
    pool: asyncpg.Pool, batches: MessageBatches, *, now: datetime, timeout: timedelta,
) -> BatchPass:
    done = BatchPass()
    async with try_advisory_lock(pool, LOCK) as held:
        if held is None:
            done.locked_out = True
            return done
        async with pool.acquire() as conn:
            open_batches = await batches_db.open_batches(conn)
        for batch in open_batches:
            if batch.batch_id is None:
                await _recover(pool, batches, batch, done)
            else:
                await _poll(pool, batches, batch, batch.batch_id, now, done)
        claimed = await claim_batch(pool, now=now, timeout=timeout)
        if claimed is not None:
            await send_batch(pool, batches, *claimed)
            done.sent += len(claimed[1])
    if done != BatchPass():
        log.info("batches.pass", **vars(done))
    return done


async def claim_batch(
    pool: asyncpg.Pool, *, now: datetime, timeout: timedelta,
) -> tuple[UUID, list[batches_db.WaitingCall]] | None:
    """The queued calls, now in a batch row of their own with no provider id yet; None when none waits."""
    async with transaction(pool) as conn:
        return await batches_db.take_queued(conn, MAX_REQUESTS, now=now, expires_at=now + timeout)


async def send_batch(
    pool: asyncpg.Pool, batches: MessageBatches, batch_job_id: UUID, calls: Sequence[batches_db.WaitingCall],
) -> None:
    """Create the batch at the provider and store its id. A failure leaves the row without one, for the
    next pass to look up (the provider may have created it before the answer was lost)."""
    try:
        batch_id = await batches.submit([(c.request_id.hex, LLMRequest.model_validate_json(c.request)) for c in calls])
    except Exception:
        log.warning("batches.submit_failed", batch_job_id=str(batch_job_id), requests=len(calls), exc_info=True)
        return
    async with transaction(pool) as conn:
        await batches_db.sent(conn, batch_job_id, batch_id)
    log.info("batches.sent", batch_job_id=str(batch_job_id), batch_id=batch_id, requests=len(calls))


async def _recover(pool: asyncpg.Pool, batches: MessageBatches, batch: batches_db.OpenBatch, done: BatchPass) -> None:
    """A row without the provider's id: the pass that wrote it stopped before storing the id (the lock
    says no pass is running). The provider's batch created since then with as many requests, and not
    ours already, is adopted; with none, its calls go back to the queue."""
    found = await batches.recent(batch.submitted_at - CLOCK_SLACK)
    async with transaction(pool) as conn:
        known = await batches_db.known_batch_ids(conn, [f.batch_id for f in found])
        match = sorted((f for f in found if f.batch_id not in known and f.request_count == batch.request_count),
                       key=lambda f: f.created_at)
        if match:
            await batches_db.sent(conn, batch.batch_job_id, match[0].batch_id)
            log.info("batches.recovered", batch_job_id=str(batch.batch_job_id), batch_id=match[0].batch_id)
            done.recovered_batches += 1
            return
        calls = await batches_db.calls_of(conn, batch.batch_job_id)
        await _retry_or_direct(conn, [c for c in calls if c.status == "sent"], "the batch never reached the provider",
                               done)
        await batches_db.finish(conn, batch.batch_job_id, status="failed", counts={},
                                error="the batch never reached the provider")


async def _poll(
    pool: asyncpg.Pool, batches: MessageBatches, batch: batches_db.OpenBatch, batch_id: str, now: datetime,
    done: BatchPass,
) -> None:
    if not await batches.ended(batch_id):
        async with transaction(pool) as conn:
            if batch.status != "in_progress" or now < batch.expires_at:
                await batches_db.polled(conn, batch.batch_job_id)
                return
            # Past its deadline: stop waiting. Its calls run directly now; it is still read when it ends,
            # for what it billed before the cancel took.
            calls = await batches_db.calls_of(conn, batch.batch_job_id)
            waiting = [c for c in calls if c.status == "sent"]
            await batches_db.mark(conn, [c.request_id for c in waiting], "synchronous", error="the batch timed out")
            await _resume(conn, waiting, answered=False)
            await batches_db.timed_out(conn, batch.batch_job_id)
        done.timed_out_batches += 1
        done.direct += len(waiting)
        log.warning("batches.timed_out", batch_job_id=str(batch.batch_job_id), batch_id=batch_id,
                    requests=len(waiting))
        try:
            await batches.cancel(batch_id)
        except Exception:  # the calls already run directly; the batch may end by itself
            log.warning("batches.cancel_failed", batch_id=batch_id, exc_info=True)
        return
    results = await batches.results(batch_id)
    async with transaction(pool) as conn:
        await _apply(conn, batch, results, done)


async def _apply(conn: Connection, batch: batches_db.OpenBatch, results: Sequence[BatchResult], done: BatchPass) -> None:
    calls = {c.request_id.hex: c for c in await batches_db.calls_of(conn, batch.batch_job_id)}
    counts: dict[str, int] = {}
    answered, failed = [], []
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        call = calls.pop(result.custom_id, None)
        if call is None:
            log.warning("batches.unknown_result", batch_job_id=str(batch.batch_job_id), custom_id=result.custom_id)
            continue
        usage = None
        if result.usage is not None:
            request = LLMRequest.model_validate_json(call.request)
            usage = result.usage.model_copy(update={"step": call.step, "prompt_version": request.prompt_version,
                                                    "success": result.outcome == "succeeded", "error": result.error})
            # Billed, whatever happens to the answer: recorded once, here.
            await record_usage(conn, [usage], batch_job_id=batch.batch_job_id)
        if call.status != "sent":
            continue  # its batch timed out and its step ran directly
        if result.outcome == "succeeded" and result.answer is not None and usage is not None:
            await batches_db.answered(conn, call.request_id, json.dumps(result.answer),
                                      usage.model_copy(update={"recorded": True}).model_dump_json())
            answered.append(call)
        else:
            failed.append((call, result))
    retry = [c for c, r in failed if r.retryable]
    await _retry_or_direct(conn, retry, "errored in its batch", done)
    direct = [c for c, r in failed if not r.retryable] + [c for c in calls.values() if c.status == "sent"]
    await batches_db.mark(conn, [c.request_id for c in direct], "synchronous",
                          error="; ".join(sorted({r.error or r.outcome for _, r in failed})) or "no result")
    await _resume(conn, direct, answered=False)
    await _resume(conn, answered, answered=True)
    await batches_db.finish(conn, batch.batch_job_id, counts=counts,
                            status="timed_out" if batch.status == "timed_out" else "completed")
    done.answered += len(answered)
    done.direct += len(direct)


async def _retry_or_direct(conn: Connection, calls: Sequence[batches_db.WaitingCall], why: str, done: BatchPass) -> None:
    """Back to the queue for the next batch, unless a call has been in MAX_ATTEMPTS batches already."""
    again = [c for c in calls if c.attempts < MAX_ATTEMPTS]
    spent = [c for c in calls if c.attempts >= MAX_ATTEMPTS]
    await batches_db.mark(conn, [c.request_id for c in again], "queued", error=why)
    await batches_db.mark(conn, [c.request_id for c in spent], "synchronous", error=why)
    await _resume(conn, spent, answered=False)
    done.retried += len(again)
    done.direct += len(spent)


async def _resume(conn: Connection, calls: Sequence[batches_db.WaitingCall], *, answered: bool) -> None:
    """Queue each call's step again: with its answer, or to call the model directly."""
    for call in calls:
        job = BULK_JOBS[call.resume_job].resume(call.subject_id, answer=call.request_id if answered else None)
        await jobs.enqueue(conn, call.resume_job, job.payload(),
                           dedupe_key=f"{call.resume_job}:{call.subject_id}:{call.request_id}")
