"""CSAT: the rating line every reply ends with, and a customer's click on one of its links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

import asyncpg

from db import lifecycle as lifecycle_db
from db.pool import transaction
from pipelines.lifecycle.csat_token import sign, verify

SCORES = range(1, 6)


@dataclass(frozen=True)
class CsatLinks:
    """Where rating links point (PUBLIC_URL), the key that signs them, and how long they work."""

    public_url: str
    secret: str
    days: int

    def link(self, token: str, score: int) -> str:
        return f"{self.public_url.rstrip('/')}/csat/{token}?score={score}"

    def line(self, case_id: UUID, now: datetime) -> str:
        """One line, five links: the last line of a reply."""
        token = sign(case_id, now + timedelta(days=self.days), self.secret)
        links = " · ".join(f"{n} {self.link(token, n)}" for n in SCORES)
        return f"How did we do? Rate this reply from 1 (poor) to 5 (excellent): {links}"


class RatingOutcome(StrEnum):
    STORED = "stored"  # the first rating, or a different score than the last
    UNCHANGED = "unchanged"  # the same score again: nothing to do
    NO_CASE = "no case"  # the link names a case that no longer exists


@dataclass(frozen=True)
class Rating:
    outcome: RatingOutcome
    case_id: UUID
    score: int
    short_id: int | None = None
    previous: int | None = None


async def rate(pool: asyncpg.Pool, token: str, score: int, secret: str, now: datetime) -> Rating:
    """Store a customer's score for the case the token names. Raises InvalidToken for a link that
    is not ours or has expired, ValueError for a score outside 1-5; either way nothing is stored."""
    claim = verify(token, secret, now)
    if score not in SCORES:
        raise ValueError(f"a score is 1 to 5, not {score}")
    async with transaction(pool) as conn:
        change = await lifecycle_db.record_csat(conn, claim.case_id, score)
    if change is None:
        return Rating(RatingOutcome.NO_CASE, claim.case_id, score)
    outcome = RatingOutcome.STORED if change.stored else RatingOutcome.UNCHANGED
    return Rating(outcome, claim.case_id, score, change.short_id, change.previous)

