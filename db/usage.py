"""LLM and embedding calls, priced by the longest matching model-id prefix in api_pricing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

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
# (without a price of their own, at the input price). Local models cost nothing.
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
                       cost_usd, latency_ms, success, error, case_id, workflow_execution_id, prompt_version)
SELECT $1, $2, $3, $4::int, $5::int, $6::int, $7::int,
       CASE WHEN $2 = 'local' THEN 0 ELSE
           (SELECT ($4::int * input_per_mtok + $5::int * output_per_mtok + $6::int * read_per_mtok
                    + $7::int * write_per_mtok) / 1e6 FROM price) END,
       $8, $9, $10, $11, $12, $13
"""


async def record_calls(
    conn: Connection, calls: Sequence[Call], *, case_id: UUID | None = None,
    execution_id: UUID | None = None,
) -> None:
    if calls:
        await conn.executemany(_RECORD, [
            (c.step, c.provider, c.model, c.input_tokens, c.output_tokens, c.cached_tokens, c.cache_write_tokens,
             c.latency_ms, c.success, c.error, case_id, execution_id, c.prompt_version)
            for c in calls
        ])
