"""`cx detect run` and `cx alerts list|show`: one detection pass on demand (as of any moment), and
the alerts it keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import EmbeddingsOption, UsageError, build_embedder_or_exit, command, out, settings_from_env
from bot.detection import detect
from bot.runtime.database import open_pool
from db import detection as detection_db
from pipelines.detection.run import DetectReport

detect_app = typer.Typer(help="Proactive detection: metrics, volume spikes, error codes, incident clusters.",
                         no_args_is_help=True)
alerts_app = typer.Typer(help="The alerts detection keeps, one per incident.", no_args_is_help=True)


def _instant(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now {text!r}: not an ISO 8601 date and time (e.g. 2026-12-03T14:00:00Z)") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def alert_json(alert: detection_db.AlertRow, status: str | None = None) -> dict[str, Any]:
    """An alert as `cx detect run --json` and `cx alerts` print it; `status` is what this run did to it."""
    shown: dict[str, Any] = {
        "fingerprint": alert.fingerprint, "kind": alert.kind, "severity": alert.severity,
        "status": status or alert.status, "title": alert.title, "evidence_count": alert.evidence_count,
        "case_ids": [str(c) for c in alert.case_ids],
    }
    for key in ("category", "subcategory", "metric", "error_code"):
        if getattr(alert, key) is not None:
            shown[key] = getattr(alert, key)
    return shown


@detect_app.command("run")
@command
async def detect_run(
    now: Annotated[str | None, typer.Option("--now", help="Evaluate as of this moment (ISO 8601; default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"alerts\": [...]} as JSON.")] = False,
    embeddings: EmbeddingsOption = None,
) -> None:
    """One detection pass. Alerts are stored (and posted to Slack by the workers, when configured)."""
    instant = _instant(now)
    settings = settings_from_env(quiet=as_json)
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        report = await detect(pool, settings, instant, embedder)
    if as_json:
        print(json.dumps({"alerts": _report_json(report)}))
        return
    _print_report(report)


def _report_json(report: DetectReport) -> list[dict[str, Any]]:
    return [alert_json(a, report.outcomes[a.alert_id]) for a in report.alerts]


def _print_report(report: DetectReport) -> None:
    for note in report.notes:
        out.print(f"[yellow]{note}[/]")
    if not report.alerts:
        out.print(f"No alerts as of {report.now.isoformat(timespec='seconds')} ({report.signals} signals).")
        return
    table = Table("this run", "severity", "kind", "title", "evidence", "fingerprint")
    for alert in report.alerts:
        table.add_row(report.outcomes[alert.alert_id], alert.severity, alert.kind, escape(alert.title),
                      str(alert.evidence_count), alert.fingerprint)
    out.print(table)


@alerts_app.command("list")
@command
async def alerts_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only alerts not resolved.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Alerts, most recently seen first."""
    settings = settings_from_env(quiet=as_json)
    async with open_pool(settings) as pool, pool.acquire() as conn:
        alerts = await detection_db.list_alerts(conn, open_only=open_only, limit=limit)
    if as_json:
        print(json.dumps({"alerts": [alert_json(a) for a in alerts]}))
        return
    if not alerts:
        out.print("No open alerts." if open_only else "No alerts.")
        return
    table = Table("status", "severity", "kind", "title", "evidence", "last seen", "fingerprint")
    for a in alerts:
        table.add_row(a.status, a.severity, a.kind, escape(a.title), str(a.evidence_count),
                      a.last_seen_at.isoformat(timespec="minutes"), a.fingerprint)
    out.print(table)


@alerts_app.command("show")
@command
async def alerts_show(
    fingerprint: Annotated[str, typer.Argument(help="The alert's fingerprint, as `cx alerts list` shows it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One alert: what fired with its figures, its cases, who acted on it."""
    settings = settings_from_env(quiet=as_json)
    async with open_pool(settings) as pool, pool.acquire() as conn:
        alert = await detection_db.alert_by_fingerprint(conn, fingerprint)
    if alert is None:
        raise UsageError(f"no alert with fingerprint {fingerprint!r} (see `cx alerts list`)")
    shown = alert_json(alert) | {
        "description": alert.description, "root_cause_hypothesis": alert.root_cause_hypothesis,
        "first_seen_at": alert.first_seen_at.isoformat(), "last_seen_at": alert.last_seen_at.isoformat(),
        "jira_issue_key": alert.jira_issue_key, "acknowledged_by": alert.acknowledged_by,
        "resolved_by": alert.resolved_by, "signals": alert.signals,
        "cases": [f"CX-{s}" for s in alert.short_ids],
    }
    if as_json:
        print(json.dumps(shown, default=str))
        return
    out.print(f"[bold]{escape(alert.title)}[/]", highlight=False)
    for key, value in shown.items():
        if key not in ("title", "case_ids") and value not in (None, [], ""):
            out.print(f"{key}: {value}", markup=False, highlight=False)
