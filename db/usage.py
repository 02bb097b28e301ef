"""LLM and embedding calls, priced by the longest matching model-id prefix in api_pricing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from db.connection import Connection


@dataclass(frozen=True)
class Call:
    step: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    latency_ms: int
    success: bool
    error: str | None
    prompt_version: str | None


# Anthropic's input_tokens excludes cache reads and cache writes, which are priced on their own
# (without a price of their own, at the input price). Local models cost nothing. A Message Batch's
# results cost half the direct price, tokens of every kind.
_RECORD = """
WITH price AS (
    SELECT input_per_mtok, output_per_mtok,
           coalesce(cache_read_per_mtok, input_per_mtok) AS read_per_mtok,
           coalesce(cache_write_per_mtok, input_per_mtok) AS write_per_mtok
    FROM api_pricing
    WHERE provider = $2 AND starts_with($3, model_prefix) AND effective_from <= now()
    ORDER BY length(model_prefix) DESC, effective_from DESC
    LIMIT 1
)
INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                       cost_usd, latency_ms, success, error, case_id, workflow_execution_id, prompt_version,
                       batch_job_id)
SELECT $1, $2, $3, $4::int, $5::int, $6::int, $7::int,
       CASE WHEN $2 = 'local' THEN 0 ELSE
           (SELECT ($4::int * input_per_mtok + $5::int * output_per_mtok + $6::int * read_per_mtok
                    + $7::int * write_per_mtok) / 1e6 FROM price)
           * CASE WHEN $14::uuid IS NULL THEN 1 ELSE 0.5 END END,
       $8, $9, $10, $11, $12, $13, $14
"""


async def record_calls(
    conn: Connection, calls: Sequence[Call], *, case_id: UUID | None = None,
    execution_id: UUID | None = None, batch_job_id: UUID | None = None,
) -> None:
    if calls:
        await conn.executemany(_RECORD, [
            (c.step, c.provider, c.model, c.input_tokens, c.output_tokens, c.cached_tokens, c.cache_write_tokens,
             c.latency_ms, c.success, c.error, case_id, execution_id, c.prompt_version, batch_job_id)
            for c in calls
        ])


@dataclass(frozen=True)
class UsageTotals:
    """Calls in a window, summed. Failed calls are counted apart but their tokens and cost are in the
    sums: a call whose answer did not validate was still billed."""

    calls: int
    failed_calls: int
    cost_usd: Decimal
    failed_cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass(frozen=True)
class UsageGroup:
    key: str  # the step, or the model as provider/model
    totals: UsageTotals


@dataclass(frozen=True)
class UsageSummary:
    since: datetime
    totals: UsageTotals
    by_step: list[UsageGroup]
    by_model: list[UsageGroup]
    cases_received: int  # cases created in the window, as the daily report counts them
    cases_with_calls: int
    median_case_cost_usd: Decimal | None
    anthropic_cache_read_tokens: int
    anthropic_prompt_tokens: int  # input + cache-read + cache-write tokens of Anthropic calls


_SUMS = """
count(*) FILTER (WHERE success)::int AS calls,
count(*) FILTER (WHERE NOT success)::int AS failed_calls,
coalesce(sum(cost_usd), 0) AS cost_usd,
coalesce(sum(cost_usd) FILTER (WHERE NOT success), 0) AS failed_cost_usd,
coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
coalesce(sum(output_tokens), 0)::bigint AS output_tokens,
coalesce(sum(cached_tokens), 0)::bigint AS cache_read_tokens,
coalesce(sum(cache_write_tokens), 0)::bigint AS cache_write_tokens
"""
_TOTALS = f"SELECT {_SUMS} FROM llm_usage WHERE created_at >= $1"
_BY_STEP = f"SELECT step AS key, {_SUMS} FROM llm_usage WHERE created_at >= $1 GROUP BY 1 ORDER BY cost_usd DESC, 1"
_BY_MODEL = (f"SELECT provider || '/' || model AS key, {_SUMS} FROM llm_usage WHERE created_at >= $1 "
             "GROUP BY 1 ORDER BY cost_usd DESC, 1")
_CASES = """
SELECT (SELECT count(*) FROM cases WHERE created_at >= $1)::int AS received,
       count(*)::int AS with_calls,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY cost::float8)::numeric AS median_cost
FROM (SELECT sum(coalesce(cost_usd, 0)) AS cost FROM llm_usage
      WHERE created_at >= $1 AND case_id IS NOT NULL GROUP BY case_id) c
"""
# Anthropic's input_tokens excludes the cache reads and writes, so the three add up to the prompt.
_CACHE = """
SELECT coalesce(sum(cached_tokens), 0)::bigint AS read,
       coalesce(sum(input_tokens + cached_tokens + cache_write_tokens), 0)::bigint AS prompt
FROM llm_usage WHERE provider = 'anthropic' AND created_at >= $1
"""


def _totals(row: asyncpg.Record) -> UsageTotals:
    return UsageTotals(**{f.name: row[f.name] for f in fields(UsageTotals)})


async def usage_summary(conn: Connection, days: int) -> UsageSummary:
    """Every call recorded in the last `days` days (24-hour periods back from now)."""
    since: datetime = await conn.fetchval("SELECT now() - make_interval(days => $1)", days)
    cases, cache, totals = [await conn.fetchrow(sql, since) for sql in (_CASES, _CACHE, _TOTALS)]
    assert cases is not None and cache is not None and totals is not None  # aggregates without GROUP BY: one row
    return UsageSummary(
        since=since,
        totals=_totals(totals),
        by_step=[UsageGroup(r["key"], _totals(r)) for r in await conn.fetch(_BY_STEP, since)],
        by_model=[UsageGroup(r["key"], _totals(r)) for r in await conn.fetch(_BY_MODEL, since)],
        cases_received=cases["received"], cases_with_calls=cases["with_calls"],
        median_case_cost_usd=cases["median_cost"],
        anthropic_cache_read_tokens=cache["read"], anthropic_prompt_tokens=cache["prompt"],
    )
