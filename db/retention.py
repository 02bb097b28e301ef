"""Retention deletes: one batch per statement, each its own short transaction.

A batch locks at most `limit` rows, and skips rows someone else holds (they go in a later batch or
the next day's pass), so a pass never holds a long lock or waits behind a worker."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from db.connection import Connection


class Kind(StrEnum):
    """What a retention window applies to."""

    SEARCH_LOG = "search_log"  # kb_searches: the customer's words as searched
    LLM_USAGE = "llm_usage"  # llm_usage detail rows, rolled up into llm_usage_hourly first
    EXECUTIONS = "executions"  # workflow_executions
    SLACK_EVENTS = "slack_events"  # slack_events_seen: Slack's retry dedupe keys
    JOB_LOG = "job_log"  # pgqueuer_log
    SCHEDULED_RUNS = "scheduled_runs"  # the scheduler's period claims, kept as long as the job log


def _batch_delete(table: str, column: str) -> str:
    return (
        f"WITH d AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING 1) "
        "SELECT count(*) FROM d"
    )


# Deleted detail and its rollup are one statement: the cost is never counted twice, nor lost.
_LLM_USAGE = """
WITH d AS (
    DELETE FROM llm_usage WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM llm_usage WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING created_at, step, provider, model, success, input_tokens, output_tokens, cached_tokens,
              cache_write_tokens, cost_usd
), rolled AS (
    INSERT INTO llm_usage_hourly AS h (hour, step, provider, model, calls, failed_calls, input_tokens, output_tokens,
                                       cached_tokens, cache_write_tokens, cost_usd)
    SELECT date_trunc('hour', created_at), step, provider, model, count(*), count(*) FILTER (WHERE NOT success),
           sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cache_write_tokens),
           coalesce(sum(cost_usd), 0)
    FROM d GROUP BY 1, 2, 3, 4
    ON CONFLICT (hour, step, provider, model) DO UPDATE SET
        calls = h.calls + EXCLUDED.calls, failed_calls = h.failed_calls + EXCLUDED.failed_calls,
        input_tokens = h.input_tokens + EXCLUDED.input_tokens, output_tokens = h.output_tokens + EXCLUDED.output_tokens,
        cached_tokens = h.cached_tokens + EXCLUDED.cached_tokens,
        cache_write_tokens = h.cache_write_tokens + EXCLUDED.cache_write_tokens,
        cost_usd = h.cost_usd + EXCLUDED.cost_usd
)
SELECT count(*) FROM d
"""

_STATEMENTS: dict[Kind, str] = {
    Kind.SEARCH_LOG: _batch_delete("kb_searches", "created_at"),
    Kind.LLM_USAGE: _LLM_USAGE,
    Kind.EXECUTIONS: _batch_delete("workflow_executions", "started_at"),
    Kind.SLACK_EVENTS: _batch_delete("slack_events_seen", "received_at"),
    Kind.JOB_LOG: _batch_delete("pgqueuer_log", "created"),
    Kind.SCHEDULED_RUNS: _batch_delete("scheduled_runs", "enqueued_at"),
}


async def now(conn: Connection) -> datetime:
    """The database's clock, which every row's timestamp came from."""
    moment: datetime = await conn.fetchval("SELECT now()")
    return moment


async def delete_batch(conn: Connection, kind: Kind, older_than: datetime, limit: int) -> int:
    """Delete up to `limit` rows of `kind` from before `older_than`; how many went."""
    deleted: int = await conn.fetchval(_STATEMENTS[kind], older_than, limit)
    return deleted
