"""`cx usage`: what the AI calls of the last days cost, by step, by model and per case, and how
often Anthropic's prompt cache was read."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import UsageError, command, out, settings_from_env
from bot.runtime.database import connect_migrated
from db import usage as usage_db
from pipelines.budgets import BudgetState, budget_states, utc_now


def _ratio(part: Decimal | int, whole: Decimal | int) -> float | None:
    return float(part) / float(whole) if whole else None


def _totals_json(t: usage_db.UsageTotals) -> dict[str, Any]:
    return {
        "calls": t.calls, "failed_calls": t.failed_calls,
        "cost_usd": float(t.cost_usd), "failed_cost_usd": float(t.failed_cost_usd),
        "input_tokens": t.input_tokens, "output_tokens": t.output_tokens,
        "cache_read_tokens": t.cache_read_tokens, "cache_write_tokens": t.cache_write_tokens,
    }


def usage_json(summary: usage_db.UsageSummary, days: int) -> dict[str, Any]:
    """What `--json` prints. A ratio without a denominator (no cases, no Anthropic call) is null."""
    median = summary.median_case_cost_usd
    return {
        "days": days,
        "since": summary.since.isoformat(timespec="seconds"),
        "totals": _totals_json(summary.totals),
        "by_step": [{"step": g.key, **_totals_json(g.totals)} for g in summary.by_step],
        "by_model": [{"model": g.key, **_totals_json(g.totals)} for g in summary.by_model],
        "per_case": {
            "cases_received": summary.cases_received,
            "cost_per_case_usd": _ratio(summary.totals.cost_usd, summary.cases_received),
            "cases_with_calls": summary.cases_with_calls,
            "median_case_cost_usd": None if median is None else float(median),
        },
        "cache": {
            "anthropic_cache_read_tokens": summary.anthropic_cache_read_tokens,
            "anthropic_prompt_tokens": summary.anthropic_prompt_tokens,
            "hit_ratio": _ratio(summary.anthropic_cache_read_tokens, summary.anthropic_prompt_tokens),
        },
    }


def budgets_json(states: list[BudgetState]) -> list[dict[str, Any]]:
    """Each active budget in its current period (TIMEZONE's local day or month)."""
    return [{
        "name": st.budget.name, "period": st.budget.period, "period_start": st.bounds.first_day.isoformat(),
        "step": st.budget.step, "provider": st.budget.provider, "limit_usd": float(st.budget.limit_usd),
        "spent_usd": float(st.spent_usd), "used_ratio": st.ratio, "state": st.state,
    } for st in states]


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _table(title: str, rows: list[dict[str, Any]], key: str) -> Table:
    table = Table(key, "calls", "failed", "cost", "input", "output", "cache read", "cache write", title=title)
    for r in rows:
        table.add_row(escape(r[key]), f"{r['calls']:,}", f"{r['failed_calls']:,}", _usd(r["cost_usd"]),
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", f"{r['cache_read_tokens']:,}",
                      f"{r['cache_write_tokens']:,}")
    return table


def _print(shown: dict[str, Any]) -> None:
    totals, case, cache = shown["totals"], shown["per_case"], shown["cache"]
    out.print(f"[bold]AI usage[/] over the last {shown['days']} days (since {shown['since']})")
    out.print(_table("by step", [*shown["by_step"], {"step": "total", **totals}], "step"))
    out.print(_table("by model", shown["by_model"], "model"))
    budgets = Table("budget", "period", "scope", "limit", "spent", "used", "state", title="budgets (current period)")
    for b in shown["budgets"]:
        scope = "/".join(escape(x) for x in (b["provider"], b["step"]) if x) or "all"
        budgets.add_row(escape(b["name"]), f"{b['period']} from {b['period_start']}", scope, _usd(b["limit_usd"]),
                        _usd(b["spent_usd"]), f"{b['used_ratio']:.0%}", b["state"])
    out.print(budgets)
    hit = cache["hit_ratio"]
    out.print(
        f"Failed calls: {totals['failed_calls']:,} ({_usd(totals['failed_cost_usd'])}, included above)\n"
        f"Per case: {_usd(case['cost_per_case_usd'])} (total cost ÷ {case['cases_received']:,} cases received); "
        f"median {_usd(case['median_case_cost_usd'])} over the {case['cases_with_calls']:,} cases with a call\n"
        f"Anthropic prompt cache hit ratio: {'-' if hit is None else f'{hit:.1%}'} "
        f"({cache['anthropic_cache_read_tokens']:,} of {cache['anthropic_prompt_tokens']:,} prompt tokens read from cache)"
    )


@command
async def usage(
    days: Annotated[int, typer.Option(help="How many days back from now (at least 1).")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """What the AI calls cost: by step, by model, per case, and the prompt cache hit ratio."""
    if days < 1:
        raise UsageError(f"--days must be at least 1, not {days}")
    settings = settings_from_env(quiet=True)
    if days > settings.retention_llm_usage_days:
        # Older calls survive only as hourly totals (no per-case or cache detail): a partial table would mislead.
        raise UsageError(f"--days {days} reaches past the {settings.retention_llm_usage_days} days the calls' detail is "
                         "kept (RETENTION_LLM_USAGE_DAYS); `cx stats --days N` has the cost of any window")
    conn = await connect_migrated(settings)
    try:
        summary = await usage_db.usage_summary(conn, days)
        budgets = await budget_states(conn, utc_now(), settings.zone)
    finally:
        await conn.close()
    shown = {**usage_json(summary, days), "budgets": budgets_json(budgets)}
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        _print(shown)
