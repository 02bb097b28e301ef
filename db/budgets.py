"""Budgets (token_budgets), what was spent against them in a period, and their notices, posted once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from db.connection import Connection

Period = Literal["daily", "monthly"]
NoticeLevel = Literal["warning", "exhausted"]


@dataclass(frozen=True)
class Budget:
    budget_id: UUID
    name: str
    period: Period
    limit_usd: Decimal
    warn_at: Decimal  # the share of the limit that posts the warning
    step: str | None  # None: every step
    provider: str | None  # None: every provider


_ACTIVE = """
SELECT budget_id, budget_name AS name, budget_type AS period, cost_limit_usd AS limit_usd,
       warning_threshold AS warn_at, step, provider
FROM token_budgets WHERE is_active ORDER BY budget_name
"""

# A failed call was billed too, so it counts; a call refused by a budget costs 0.
_SPENT = """
SELECT coalesce(sum(cost_usd), 0) FROM llm_usage
WHERE created_at >= $1 AND created_at < $2
  AND ($3::text IS NULL OR step = $3) AND ($4::text IS NULL OR provider = $4)
"""

_SET = """
INSERT INTO token_budgets (budget_name, provider, step, budget_type, cost_limit_usd, warning_threshold)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (budget_name) DO UPDATE SET provider = EXCLUDED.provider, step = EXCLUDED.step,
    budget_type = EXCLUDED.budget_type, cost_limit_usd = EXCLUDED.cost_limit_usd,
    warning_threshold = EXCLUDED.warning_threshold, is_active = true, updated_at = now()
RETURNING budget_id
"""

_DEACTIVATE = "UPDATE token_budgets SET is_active = false, updated_at = now() WHERE budget_name = $1 AND is_active"

_CLAIM = """
INSERT INTO budget_notices (budget_id, period_start, level) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING true
"""


async def active_budgets(conn: Connection) -> list[Budget]:
    return [Budget(**dict(r)) for r in await conn.fetch(_ACTIVE)]


async def spent(conn: Connection, budget: Budget, start: datetime, end: datetime) -> Decimal:
    value: Decimal = await conn.fetchval(_SPENT, start, end, budget.step, budget.provider)
    return value


async def set_budget(conn: Connection, name: str, *, period: Period, limit_usd: Decimal, warn_at: Decimal,
                     step: str | None = None, provider: str | None = None) -> UUID:
    """Create or replace the budget called `name`, active."""
    budget_id: UUID = await conn.fetchval(_SET, name, provider, step, period, limit_usd, warn_at)
    return budget_id


async def deactivate(conn: Connection, name: str) -> bool:
    """False if no active budget has that name."""
    return str(await conn.execute(_DEACTIVATE, name)) != "UPDATE 0"


async def claim_notice(conn: Connection, budget_id: UUID, period_start: date, level: NoticeLevel) -> bool:
    """True if this notice was not posted yet in the period. Run it in the transaction that posts:
    a post that fails rolls the claim back, and a concurrent claim waits for the outcome."""
    return bool(await conn.fetchval(_CLAIM, budget_id, period_start, level))
