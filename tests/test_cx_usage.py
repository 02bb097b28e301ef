"""`cx usage`: the cost of the AI calls by step, by model and per case, and the prompt cache hit ratio,
from llm_usage rows whose figures are worked out by hand below."""

from __future__ import annotations

import json

import pytest

from tests.cli_runner import cx, cx_env
from tests.support.cases import new_case

_INSERT = """
INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                       cost_usd, success, case_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() - make_interval(hours => $11))
"""
SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"


async def _calls(pool) -> None:
    a = await new_case(pool, "My card was charged twice for one order.")
    b = await new_case(pool, "The app logs me out every few minutes.")
    c = await new_case(pool, "Please close my account, I am moving abroad.")
    await pool.execute("UPDATE cases SET created_at = now() - interval '8 days 12 hours' WHERE case_id = $1", c)
    rows = [
        # step, provider, model, input, output, cache read, cache write, cost, success, case, hours ago
        ("triage", "anthropic", HAIKU, 100, 20, 1000, 0, 0.001, True, a, 24),
        ("draft", "anthropic", SONNET, 200, 300, 0, 1500, 0.006, True, a, 24),
        ("draft", "anthropic", SONNET, 250, 0, 1500, 0, 0.002, False, b, 48),  # billed, then failed to validate
        ("embedding", "openai", "text-embedding-3-small", 50, 0, 0, 0, 0.000001, True, None, 1),
        ("triage", "local", "tfidf-logreg", 0, 0, 0, 0, 0, True, b, 1),
        ("draft", "anthropic", SONNET, 1000, 1000, 0, 0, 0.5, True, c, 8 * 24),  # outside 7 days, inside 9
    ]
    await pool.executemany(_INSERT, rows)


def _row(calls, failed, cost, failed_cost, inp, output, read, write):
    return {"calls": calls, "failed_calls": failed, "cost_usd": pytest.approx(cost, abs=1e-9),
            "failed_cost_usd": pytest.approx(failed_cost, abs=1e-9), "input_tokens": inp, "output_tokens": output,
            "cache_read_tokens": read, "cache_write_tokens": write}


async def test_cost_by_step_model_and_case_and_the_cache_hit_ratio(pool, dsn, tmp_path):
    await _calls(pool)
    env = cx_env(DATABASE_URL=dsn, CX_DATA_DIR=str(tmp_path))

    result = cx("usage", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["days"] == 7
    assert shown["totals"] == _row(4, 1, 0.009001, 0.002, 600, 320, 2500, 1500)
    assert shown["by_step"] == [  # costliest first
        {"step": "draft", **_row(1, 1, 0.008, 0.002, 450, 300, 1500, 1500)},
        {"step": "triage", **_row(2, 0, 0.001, 0, 100, 20, 1000, 0)},
        {"step": "embedding", **_row(1, 0, 0.000001, 0, 50, 0, 0, 0)},
    ]
    assert [(m["model"], m["calls"], m["failed_calls"]) for m in shown["by_model"]] == [
        (f"anthropic/{SONNET}", 1, 1), (f"anthropic/{HAIKU}", 1, 0),
        ("openai/text-embedding-3-small", 1, 0), ("local/tfidf-logreg", 1, 0)]
    assert shown["by_model"][0]["cost_usd"] == pytest.approx(0.008)
    # Two cases received in the window (the third is eight and a half days old); both had calls: $0.007 and $0.002.
    assert shown["per_case"] == {"cases_received": 2, "cost_per_case_usd": pytest.approx(0.009001 / 2),
                                 "cases_with_calls": 2, "median_case_cost_usd": pytest.approx(0.0045)}
    # Anthropic prompts: (100 + 1000 + 0) + (200 + 0 + 1500) + (250 + 1500 + 0) tokens, 2500 of them read.
    assert shown["cache"] == {"anthropic_cache_read_tokens": 2500, "anthropic_prompt_tokens": 4550,
                              "hit_ratio": pytest.approx(2500 / 4550)}

    wider = json.loads(cx("usage", "--days", "9", "--json", env=env).stdout)
    assert wider["totals"]["cost_usd"] == pytest.approx(0.509001)
    assert wider["per_case"] == {"cases_received": 3, "cost_per_case_usd": pytest.approx(0.509001 / 3),
                                 "cases_with_calls": 3, "median_case_cost_usd": pytest.approx(0.007)}

    table = cx("usage", env=env)
    assert table.returncode == 0, table.stderr
    assert "$0.0090" in table.stdout and "54.9%" in table.stdout and "$0.0045" in table.stdout
    assert f"anthropic/{SONNET}" in table.stdout and "Failed calls: 1" in table.stdout


async def test_a_fresh_database_shows_zeros_and_bad_days_exit_2(dsn, tmp_path):
    env = cx_env(DATABASE_URL=dsn, CX_DATA_DIR=str(tmp_path))
    result = cx("usage", "--json", "--days", "1", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["totals"] == _row(0, 0, 0, 0, 0, 0, 0, 0)
    assert (shown["by_step"], shown["by_model"]) == ([], [])
    assert shown["per_case"] == {"cases_received": 0, "cost_per_case_usd": None, "cases_with_calls": 0,
                                 "median_case_cost_usd": None}
    assert shown["cache"] == {"anthropic_cache_read_tokens": 0, "anthropic_prompt_tokens": 0, "hit_ratio": None}
    table = cx("usage", env=env)
    assert table.returncode == 0 and "AI usage" in table.stdout, table.stderr

    for bad in ("0", "-3", "week"):
        result = cx("usage", "--days", bad, env=env)
        assert result.returncode == 2 and result.stdout == "", result.stderr
    assert "at least 1" in cx("usage", "--days", "0", env=env).stderr
    beyond = cx("usage", "--days", "91", env=env)
    assert beyond.returncode == 2 and "RETENTION_LLM_USAGE_DAYS" in beyond.stderr, beyond.stderr
