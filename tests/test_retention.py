"""Retention: each kind's rows older than its window go, in batches that skip locked rows; newer ones
stay; the LLM cost of deleted usage rows moves into llm_usage_hourly, so the daily cost figures and
the cost per step are the same before and after."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import SettingsError
from db.retention import Kind
from pipelines.jobs import JobName, NoPayload
from pipelines.retention import RetentionPolicy, apply_retention

POLICY = RetentionPolicy(search_log=timedelta(days=30), llm_usage=timedelta(days=90),
                         executions=timedelta(days=30), slack_events=timedelta(days=7), job_log=timedelta(days=30))

# Per kind: (rows to make just outside the window, rows inside it), by age in days.
OLD_AGES = {Kind.SEARCH_LOG: 31, Kind.LLM_USAGE: 91, Kind.EXECUTIONS: 31, Kind.SLACK_EVENTS: 8,
            Kind.JOB_LOG: 31, Kind.SCHEDULED_RUNS: 31}
NEW_AGES = {Kind.SEARCH_LOG: 29, Kind.LLM_USAGE: 89, Kind.EXECUTIONS: 29, Kind.SLACK_EVENTS: 6,
            Kind.JOB_LOG: 29, Kind.SCHEDULED_RUNS: 29}
OLD, NEW = 7, 2  # seven old rows with batches of three: three statements, the last one short

_INSERT = {
    Kind.SEARCH_LOG: "INSERT INTO kb_searches (query, created_at) VALUES ('where is my card ' || $2, now() - $1::interval)",
    Kind.EXECUTIONS: "INSERT INTO workflow_executions (workflow_name, started_at) VALUES ('triage ' || $2, now() - $1::interval)",
    Kind.SLACK_EVENTS: "INSERT INTO slack_events_seen (event_id, received_at) VALUES ('Ev' || $2, now() - $1::interval)",
    Kind.JOB_LOG: "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint) "
                  "VALUES (now() - $1::interval, $2::text::int, 'successful', 0, 'case.triage')",
    Kind.SCHEDULED_RUNS: "INSERT INTO scheduled_runs (job_name, period_key, enqueued_at) "
                         "VALUES ('maintenance.prune', $2, now() - $1::interval)",
}
_TABLES = {Kind.SEARCH_LOG: ("kb_searches", "created_at"), Kind.LLM_USAGE: ("llm_usage", "created_at"),
           Kind.EXECUTIONS: ("workflow_executions", "started_at"), Kind.SLACK_EVENTS: ("slack_events_seen", "received_at"),
           Kind.JOB_LOG: ("pgqueuer_log", "created"), Kind.SCHEDULED_RUNS: ("scheduled_runs", "enqueued_at")}


async def _fill(pool) -> None:
    n = 0
    for kind in Kind:
        for age, count in ((OLD_AGES[kind], OLD), (NEW_AGES[kind], NEW)):
            for i in range(count):
                n += 1
                when = timedelta(days=age, hours=i)
                if kind is Kind.LLM_USAGE:
                    await pool.execute(
                        "INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cost_usd, success, "
                        "created_at) VALUES ($1, 'anthropic', 'claude-haiku-4-5', 100, 20, $2, $3, now() - $4::interval)",
                        "triage" if i % 2 else "draft", Decimal("0.0125") * (i + 1), i != 3, when)
                else:
                    await pool.execute(_INSERT[kind], when, str(n))


async def _ages(pool, kind: Kind) -> list[int]:
    table, column = _TABLES[kind]
    rows = await pool.fetch(f"SELECT extract(day FROM now() - {column})::int AS age FROM {table} ORDER BY 1")
    return [r["age"] for r in rows]


async def _daily_costs(pool) -> list[tuple]:
    """metrics_cost_between for each of the last 100 UTC days, and the cost per step over all time."""
    days = await pool.fetch(
        "SELECT d::date AS day, m.llm_calls, m.llm_cost_usd FROM generate_series((now()::date - 100)::timestamptz, "
        "now()::date::timestamptz, interval '1 day') d CROSS JOIN LATERAL metrics_cost_between(d, d + interval '1 day') m ORDER BY 1")
    return [tuple(r) for r in days]


async def _cost_by_step(pool) -> dict[str, tuple]:
    rows = await pool.fetch(
        "SELECT step, sum(calls) AS calls, sum(failed) AS failed, sum(tokens) AS tokens, sum(cost) AS cost FROM ("
        " SELECT step, count(*) AS calls, count(*) FILTER (WHERE NOT success) AS failed,"
        "        sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost FROM llm_usage GROUP BY step"
        " UNION ALL SELECT step, sum(calls), sum(failed_calls), sum(input_tokens + output_tokens), sum(cost_usd)"
        " FROM llm_usage_hourly GROUP BY step) x GROUP BY step ORDER BY step")
    return {r["step"]: (r["calls"], r["failed"], r["tokens"], r["cost"]) for r in rows}


async def test_old_rows_go_in_batches_new_ones_stay_and_the_cost_figures_do_not_change(pool):
    await _fill(pool)
    costs_before, by_step_before = await _daily_costs(pool), await _cost_by_step(pool)
    assert sum(c[1] for c in costs_before) == OLD + NEW  # both ages of usage inside the 100 days

    deleted = await apply_retention(pool, POLICY, batch=3)

    assert deleted == {kind: OLD for kind in Kind}
    for kind in Kind:
        assert await _ages(pool, kind) == [NEW_AGES[kind]] * NEW, kind
    assert await pool.fetchval("SELECT count(*) FROM llm_usage_hourly") == OLD  # an hour apart each
    assert await _daily_costs(pool) == costs_before
    assert await _cost_by_step(pool) == by_step_before
    # A second pass finds nothing more, and the rolled-up cost is not added twice.
    assert await apply_retention(pool, POLICY, batch=3) == {kind: 0 for kind in Kind}
    assert await _cost_by_step(pool) == by_step_before


async def test_a_row_another_transaction_holds_is_skipped_not_waited_for(pool):
    await _fill(pool)
    async with pool.acquire() as holder, holder.transaction():
        held = await holder.fetchval(
            "SELECT search_id FROM kb_searches WHERE created_at < now() - interval '30 days' LIMIT 1 FOR UPDATE")
        started = time.monotonic()
        deleted = await asyncio.wait_for(apply_retention(pool, POLICY, batch=3), timeout=10)
        assert time.monotonic() - started < 5
    assert deleted[Kind.SEARCH_LOG] == OLD - 1
    assert await pool.fetchval("SELECT count(*) FROM kb_searches WHERE search_id = $1", held) == 1
    # The next day's pass takes it.
    assert (await apply_retention(pool, POLICY))[Kind.SEARCH_LOG] == 1


async def test_the_daily_maintenance_job_applies_the_retention_settings(pool, make_settings):
    await _fill(pool)
    settings = make_settings(retention_search_log_days=60, retention_slack_event_days=30)
    await job_handlers(Deps(settings=settings, pool=pool, metrics=Metrics()))[JobName.PRUNE](NoPayload().payload())
    assert await _ages(pool, Kind.SEARCH_LOG) == [NEW_AGES[Kind.SEARCH_LOG]] * NEW + [OLD_AGES[Kind.SEARCH_LOG]] * OLD
    assert await _ages(pool, Kind.SLACK_EVENTS) == [NEW_AGES[Kind.SLACK_EVENTS]] * NEW + [OLD_AGES[Kind.SLACK_EVENTS]] * OLD
    assert await _ages(pool, Kind.EXECUTIONS) == [NEW_AGES[Kind.EXECUTIONS]] * NEW  # the 30-day default


def test_retention_settings_defaults_and_the_floor_of_llm_usage(make_settings):
    policy = make_settings().retention
    assert (policy.search_log, policy.llm_usage, policy.executions, policy.slack_events, policy.job_log) == (
        timedelta(days=30), timedelta(days=90), timedelta(days=30), timedelta(days=7), timedelta(days=30))
    with pytest.raises(SettingsError, match="retention_llm_usage_days|RETENTION_LLM_USAGE_DAYS"):
        make_settings(retention_llm_usage_days=31)
