"""`cx stats`: the ops runbook's numbers, on a desk seeded below with every figure worked out by hand."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import typer
from rich.console import Console

from bot.cli.stats import _table, stats, stats_json
from db import intake as intake_db
from db import jobs
from db import retention as retention_db
from db import stats as stats_db
from db.pool import transaction
from tests.cli_runner import cx, cx_env

# text, hours ago created, status, route, resolution type, hours ago resolved, hours ago a review was queued
_CASES = [
    ("Where is my card?", 30, "resolved", "self_service", "self_service", 20, None),
    ("Refund my double charge.", 50, "resolved", "review", "collaborative", 40, None),
    ("The app crashes on login.", 5, "awaiting_review", "review", None, None, 3),
    ("I want to speak to someone now.", 40, "human_owned", "human", None, None, 30),
    ("Close my account.", 1, "new", None, None, None, None),
    ("My PIN is blocked.", 10 * 24, "resolved", "self_service", "self_service", 9 * 24, None),  # outside 7 days
]


async def _seed(pool) -> None:
    async with transaction(pool) as conn:
        # Statuses set as an import would leave them: the state machine's trigger is for live moves.
        await conn.execute("SET LOCAL session_replication_role = replica")
        for n, (text, created, status, route, resolution, resolved, review) in enumerate(_CASES):
            stored = await intake_db.create_case(
                conn, customer_email=f"c{n}@example.com", customer_name=None, channel="webhook",
                subject=None, description=text, interaction_type="webhook_in", external_id=f"x-{n}")
            await conn.execute(
                "UPDATE cases SET status = $2, created_at = now() - make_interval(hours => $3),"
                " resolution_type = $4, resolved_at = now() - make_interval(hours => $5),"
                " metadata = CASE WHEN $6::text IS NULL THEN metadata"
                "            ELSE metadata || jsonb_build_object('route', $6::text) END"
                " WHERE case_id = $1",
                stored.case_id, status, created, resolution, resolved, route)
            if review is not None:
                await conn.execute(
                    "INSERT INTO review_queue (case_id, status, created_at)"
                    " VALUES ($1, 'pending', now() - make_interval(hours => $2))", stored.case_id, review)
        # One decided review, which is not backlog.
        await conn.execute("INSERT INTO review_queue (case_id, status, reviewed_at) "
                           "SELECT case_id, 'approved', now() FROM cases WHERE external_id = 'x-1'")
        for n in range(3):
            await jobs.enqueue(conn, "demo.job", b"{}", dedupe_key=f"job-{n}")
        await conn.execute("UPDATE pgqueuer SET status = 'failed' WHERE dedupe_key IN ('job-0', 'job-1')")
        await conn.executemany(
            "INSERT INTO llm_usage (step, provider, model, cost_usd, success, created_at)"
            " VALUES ($1, 'anthropic', 'claude-haiku-4-5', $2, $3, now() - make_interval(hours => $4))",
            [("triage", 0.25, True, 2), ("draft", 0.5, False, 26), ("draft", 2.0, True, 8 * 24)])


async def test_the_numbers_of_the_last_days(pool, dsn, tmp_path):
    await _seed(pool)
    env = cx_env(DATABASE_URL=dsn, CX_DATA_DIR=str(tmp_path))

    result = cx("stats", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["days"] == 7
    assert shown["cases_received"] == 5
    assert shown["cases_by_status"] == {"awaiting_review": 1, "human_owned": 1, "new": 1, "resolved": 2}
    assert shown["cases_by_route"] == {"human": 1, "review": 2, "self_service": 1, "untriaged": 1}
    assert (shown["resolved"], shown["self_service_resolved"]) == (2, 1)
    assert shown["self_service_rate"] == pytest.approx(0.5)
    assert shown["review_backlog"] == 2
    assert shown["oldest_review_age_seconds"] == pytest.approx(30 * 3600, abs=120)
    assert shown["failed_jobs"] == 2
    assert shown["llm_cost_usd"] == pytest.approx(0.75)  # a failed call was billed too; the 8-day-old one is out

    # The rest in this process: each `cx` costs seconds of imports.
    async with pool.acquire() as conn:
        wider = stats_json(await stats_db.ops_stats(conn, 14), 14)
    assert wider["cases_received"] == 6 and wider["cases_by_route"]["self_service"] == 2
    assert wider["self_service_rate"] == pytest.approx(2 / 3)
    assert wider["llm_cost_usd"] == pytest.approx(2.75)
    # Retention rolls the 8-day-old call up by the hour: the 14-day window still counts its cost.
    async with pool.acquire() as conn:
        assert await retention_db.delete_batch(conn, retention_db.Kind.LLM_USAGE,
                                               await retention_db.now(conn) - timedelta(days=7), 100) == 1
        assert stats_json(await stats_db.ops_stats(conn, 14), 14)["llm_cost_usd"] == pytest.approx(2.75)

    console = Console(record=True, width=200)
    console.print(_table(shown))
    text = console.export_text()
    for line in ("cases received", "route self_service", "50.0% (1 of 2 resolved)", "30 h 00 min", "$0.7500"):
        assert line in text, text


async def test_an_empty_desk(pool):
    async with pool.acquire() as conn:
        shown = stats_json(await stats_db.ops_stats(conn, 7), 7)
    assert shown["cases_received"] == 0 and shown["cases_by_status"] == {}
    assert shown["self_service_rate"] is None and shown["oldest_review_age_seconds"] is None
    assert (shown["review_backlog"], shown["failed_jobs"], shown["llm_cost_usd"]) == (0, 0, 0.0)


async def test_bad_days_exit_2(capsys):
    with pytest.raises(typer.Exit) as stopped:
        await asyncio.to_thread(stats, days=0, as_json=False)  # refused before settings or the database
    assert stopped.value.exit_code == 2
    assert "--days must be at least 1, not 0" in capsys.readouterr().err


async def test_a_database_never_migrated_reads_as_an_empty_desk(empty_dsn, tmp_path):
    """The first command a new operator runs may be a read: it migrates, as `cx run` would, rather than
    failing on missing tables."""
    env = cx_env(DATABASE_URL=empty_dsn, CX_DATA_DIR=str(tmp_path))
    result = await asyncio.to_thread(cx, "stats", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["cases_received"] == 0 and shown["failed_jobs"] == 0
    jobs_list = await asyncio.to_thread(cx, "jobs", "list", env=env)
    assert jobs_list.returncode == 0 and "No jobs." in jobs_list.stdout, jobs_list.stderr
