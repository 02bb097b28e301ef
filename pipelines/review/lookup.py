"""Finding cases for people: by id, short id, customer email or words; someone's open cases; the
review queue's size; and the knowledge-base results someone chose to share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from db import case_lookup as lookup_db
from db.cases import DONE
from db.connection import Connection
from db.pool import transaction
from db.review import first_delivery
from pipelines.models import SHORT_ID_MAX

CaseFacts = lookup_db.CaseFacts
DayCounts = lookup_db.DayCounts
CaseRow = lookup_db.CaseRow
QueueCounts = lookup_db.QueueCounts
SharedArticle = lookup_db.SharedArticle
TimelineRow = lookup_db.TimelineRow

TIMELINE_ENTRIES = 10
MATCHES = 10


@dataclass(frozen=True)
class Matches:
    """Cases found by email or words: the best `cases`, `total` in all, and the case itself when
    exactly one matched (so the caller can show it rather than a list of one)."""

    cases: list[CaseRow]
    total: int
    only: CaseFacts | None = None


async def by_id(pool: asyncpg.Pool, case_id: UUID) -> CaseFacts | None:
    async with pool.acquire() as conn:
        return await lookup_db.case_by_id(conn, case_id, TIMELINE_ENTRIES)


async def by_short_id(pool: asyncpg.Pool, short_id: int) -> CaseFacts | None:
    if not 0 < short_id <= SHORT_ID_MAX:
        return None
    async with pool.acquire() as conn:
        return await lookup_db.case_by_short_id(conn, short_id, TIMELINE_ENTRIES)


async def by_email(pool: asyncpg.Pool, email: str) -> Matches:
    async with pool.acquire() as conn:
        cases, total = await lookup_db.cases_by_email(conn, email.strip(), MATCHES)
        return await _matches(conn, cases, total)


async def by_words(pool: asyncpg.Pool, words: str) -> Matches:
    async with pool.acquire() as conn:
        cases, total = await lookup_db.cases_by_words(conn, words, MATCHES)
        return await _matches(conn, cases, total)


async def my_cases(pool: asyncpg.Pool, slack_user: str, limit: int = MATCHES) -> tuple[list[CaseRow], int]:
    """The open cases the Slack user owns (the latest `limit`), and how many in all."""
    async with pool.acquire() as conn:
        return await lookup_db.open_cases_of(conn, slack_user, limit, sorted(DONE))


async def queue_counts(pool: asyncpg.Pool) -> QueueCounts:
    async with pool.acquire() as conn:
        return await lookup_db.queue_counts(conn)


async def day_counts(pool: asyncpg.Pool, since: datetime) -> DayCounts:
    async with pool.acquire() as conn:
        return await lookup_db.day_counts(conn, since)


async def shared_articles(
    pool: asyncpg.Pool, delivery_id: str, refs: Sequence[tuple[UUID, UUID]], query: str
) -> list[SharedArticle] | None:
    """The articles of a Share click, still published, in their order; None for a redelivered
    click (same delivery id), which must not post a second time."""
    async with transaction(pool) as conn:
        if not await first_delivery(conn, delivery_id):
            return None
        return await lookup_db.shared_articles(conn, refs, query)


async def _matches(conn: Connection, cases: list[CaseRow], total: int) -> Matches:
    if total != 1:
        return Matches(cases, total)
    return Matches(cases, total, await lookup_db.case_by_id(conn, cases[0].case_id, TIMELINE_ENTRIES))
