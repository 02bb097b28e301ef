"""Budgets in dollars that degrade the product instead of stopping it.

A budget's period is TIMEZONE's local day or month; its spend is llm_usage.cost_usd in that period,
for its step and provider (or all). When a budget that covers a call is spent, BudgetedLLM refuses
the call with BudgetExhausted, an LLMError: the fallbacks every step already has for a failed Claude
call take over (triage keeps the local answer capped below HIGH, drafting the extractive draft,
summaries the template), so each case still goes to a person. The next period starts at zero."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

from db import budgets as budgets_db
from db.budgets import Budget, NoticeLevel, Period
from db.connection import Connection
from db.pool import transaction
from pipelines.ports import LLMError, LLMUsage, M, StructuredLLM

State = Literal["ok", "warning", "exhausted"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PeriodBounds:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    first_day: date  # the local date the period starts on: the key of its notices


def period_bounds(period: Period, now: datetime, zone: ZoneInfo) -> PeriodBounds:
    """The local day or month `now` falls in. A DST day is 23 or 25 hours long."""
    local = now.astimezone(zone).date()
    first = local if period == "daily" else local.replace(day=1)
    if period == "daily":
        after = first + timedelta(days=1)
    else:
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)

    def midnight(day: date) -> datetime:
        # In UTC: the difference of two datetimes of one zone ignores a DST change between them.
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)

    return PeriodBounds(midnight(first), midnight(after), first)


@dataclass(frozen=True)
class BudgetState:
    budget: Budget
    bounds: PeriodBounds
    spent_usd: Decimal

    @property
    def ratio(self) -> float:
        return float(self.spent_usd / self.budget.limit_usd)

    @property
    def state(self) -> State:
        if self.spent_usd >= self.budget.limit_usd:
            return "exhausted"
        return "warning" if self.ratio >= float(self.budget.warn_at) else "ok"

    def covers(self, step: str, provider: str) -> bool:
        return self.budget.step in (None, step) and self.budget.provider in (None, provider)


async def budget_states(conn: Connection, now: datetime, zone: ZoneInfo) -> list[BudgetState]:
    """Every active budget with what was spent against it in its current period."""
    states = []
    for budget in await budgets_db.active_budgets(conn):
        bounds = period_bounds(budget.period, now, zone)
        states.append(BudgetState(budget, bounds, await budgets_db.spent(conn, budget, bounds.start, bounds.end)))
    return states


class BudgetExhausted(LLMError):
    """The call was not made: a budget that covers it is spent for its period."""


class BudgetGate:
    """The budgets' states, read at most every `ttl` seconds: a call costs no round trip to check."""

    def __init__(self, pool: asyncpg.Pool, zone: ZoneInfo, *, ttl: float = 10.0, clock: Clock = utc_now) -> None:
        self._pool, self._zone, self._ttl, self._clock = pool, zone, ttl, clock
        self._states: list[BudgetState] = []
        self._read_at: float | None = None

    async def exhausted(self, step: str, provider: str) -> BudgetState | None:
        """A spent budget covering this call, if any."""
        if self._read_at is None or time.monotonic() - self._read_at >= self._ttl:
            async with self._pool.acquire() as conn:
                self._states = await budget_states(conn, self._clock(), self._zone)
            self._read_at = time.monotonic()
        return next((s for s in self._states if s.state == "exhausted" and s.covers(step, provider)), None)


class BudgetedLLM:
    """A StructuredLLM that refuses calls a spent budget covers."""

    def __init__(self, inner: StructuredLLM, gate: BudgetGate, *, provider: str = "anthropic") -> None:
        self._inner, self._gate, self._provider = inner, gate, provider

    async def complete(
        self, *, step: str, model: str, system: str, user: str, output: type[M],
        schema: dict[str, object] | None = None, max_tokens: int = 1024, prompt_version: str | None = None,
    ) -> tuple[M, LLMUsage]:
        spent = await self._gate.exhausted(step, self._provider)
        if spent is not None:
            why = (f"budget {spent.budget.name!r} reached (${spent.spent_usd:.2f} of "
                   f"${spent.budget.limit_usd:.2f} {spent.budget.period})")
            # Recorded as a failed call at zero cost, so `cx usage` shows how many calls were refused.
            raise BudgetExhausted(why, LLMUsage(step=step, provider=self._provider, model=model, success=False,
                                                error="budget exhausted", prompt_version=prompt_version))
        # Forwards the caller's step, so it is no step of its own for the model table (bot/model_tiers.py).
        forward = self._inner.complete
        return await forward(step=step, model=model, system=system, user=user, output=output, schema=schema,
                             max_tokens=max_tokens, prompt_version=prompt_version)


Post = Callable[[BudgetState, NoticeLevel], Awaitable[None]]
_DUE: dict[State, tuple[NoticeLevel, ...]] = {"ok": (), "warning": ("warning",),
                                              "exhausted": ("warning", "exhausted")}


async def post_notices(pool: asyncpg.Pool, states: Sequence[BudgetState], post: Post) -> list[tuple[str, str]]:
    """Post each budget's warning and "reached" notice once per period; returns (budget, level) posted.
    A spent budget that was never warned about gets both: the warning says how close it came first."""
    posted: list[tuple[str, str]] = []
    for s in states:
        for level in _DUE[s.state]:
            async with transaction(pool) as conn:
                if await budgets_db.claim_notice(conn, s.budget.budget_id, s.bounds.first_day, level):
                    await post(s, level)
                    posted.append((s.budget.name, level))
    return posted
