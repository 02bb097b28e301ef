"""`cx stats`: the ops runbook's numbers in one table."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import UsageError, command, out, settings_from_env
from bot.runtime.database import connect_migrated
from db import stats as stats_db


def stats_json(s: stats_db.OpsStats, days: int) -> dict[str, Any]:
    """What `--json` prints. A rate without a denominator (nothing resolved) is null."""
    return {
        "days": days,
        "since": s.since.isoformat(timespec="seconds"),
        "cases_received": s.received,
        "cases_by_status": s.by_status,
        "cases_by_route": s.by_route,
        "resolved": s.resolved,
        "self_service_resolved": s.self_service_resolved,
        "self_service_rate": s.self_service_resolved / s.resolved if s.resolved else None,
        "review_backlog": s.review_backlog,
        "oldest_review_age_seconds": s.oldest_review_seconds,
        "failed_jobs": s.failed_jobs,
        "llm_cost_usd": float(s.llm_cost_usd),
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _table(shown: dict[str, Any]) -> Table:
    table = Table("figure", "value", title=f"CX-Catalyst over the last {shown['days']} days (since {shown['since']})")
    table.add_row("cases received", f"{shown['cases_received']:,}")
    for status, n in shown["cases_by_status"].items():
        table.add_row(f"  status {escape(status)}", f"{n:,}")
    for route, n in shown["cases_by_route"].items():
        table.add_row(f"  route {escape(route)}", f"{n:,}")
    rate = shown["self_service_rate"]
    table.add_row("self-service rate",
                  f"{'-' if rate is None else f'{rate:.1%}'} "
                  f"({shown['self_service_resolved']:,} of {shown['resolved']:,} resolved)")
    table.add_row("review backlog (pending now)", f"{shown['review_backlog']:,}")
    table.add_row("oldest pending review", _age(shown["oldest_review_age_seconds"]))
    table.add_row("failed jobs (held now)", f"{shown['failed_jobs']:,}")
    table.add_row("LLM cost", f"${shown['llm_cost_usd']:,.4f}")
    return table


@command
async def stats(
    days: Annotated[int, typer.Option(help="How many days back from now (at least 1).")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
) -> None:
    """Cases by status and route, self-service rate, review backlog, failed jobs and LLM cost."""
    if days < 1:
        raise UsageError(f"--days must be at least 1, not {days}")
    settings = settings_from_env(quiet=True)
    conn = await connect_migrated(settings)
    try:
        shown = stats_json(await stats_db.ops_stats(conn, days), days)
    finally:
        await conn.close()
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        out.print(_table(shown))
