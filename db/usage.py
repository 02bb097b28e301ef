"""LLM and embedding calls, priced by the longest matching model-id prefix in api_pricing."""

from __future__ import annotations

from uuid import UUID

import asyncpg

# Anthropic's input_tokens excludes cache reads, which are priced on their own.
_RECORD = """
WITH price AS (
    SELECT input_per_mtok, output_per_mtok, coalesce(cache_read_per_mtok, input_per_mtok) AS cache_per_mtok
    FROM api_pricing
    WHERE provider = $2 AND starts_with($3, model_prefix) AND effective_from <= now()
    ORDER BY length(model_prefix) DESC, effective_from DESC
    LIMIT 1
)
INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cached_tokens, cost_usd,
                       latency_ms, success, error, case_id, workflow_execution_id, prompt_version)
SELECT $1, $2, $3, $4::int, $5::int, $6::int,
       (SELECT ($4::int * input_per_mtok + $5::int * output_per_mtok + $6::int * cache_per_mtok) / 1e6 FROM price),
       $7, $8, $9, $10, $11, $12
"""


async def record_call(
    conn: asyncpg.Connection,
    *,
    step: str,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    latency_ms: int,
    success: bool,
    error: str | None,
    prompt_version: str | None,
    case_id: UUID | None = None,
    execution_id: UUID | None = None,
) -> None:
    await conn.execute(
        _RECORD, step, provider, model, input_tokens, output_tokens, cached_tokens,
        latency_ms, success, error, case_id, execution_id, prompt_version,
    )
