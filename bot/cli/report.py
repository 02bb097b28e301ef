"""`cx report daily`: one local day's report, shown (`--json`), written to files as the product would
send it (`--out`: the chart, the email, every Slack call), or delivered for real (`--send`)."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from rich.markup import escape
from rich.table import Table

from bot import clients
from bot.cli.common import EmbeddingsOption, UsageError, build_embedder_or_exit, command, out, settings_from_env
from bot.runtime.database import open_pool
from bot.services.daily_report import DailyReportService, daily_config, post_report
from bot.settings import Settings
from bot.slack.recorder import RecordingSlack
from pipelines.learning.daily import build_report, run_daily
from pipelines.learning.daily_metrics import previous_day
from pipelines.learning.report import DailyReport, formatted, formatted_change
from pipelines.learning.report_email import chart_of, render_html, send_report_email
from pipelines.ports import Embedder

report_app = typer.Typer(help="Reports: the daily metrics, KB gaps and retraining.", no_args_is_help=True)

def _day(text: str | None, settings: Settings) -> date:
    today = datetime.now(settings.zone).date()
    if text is None:
        return previous_day(datetime.now(settings.zone), settings.zone)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date {text!r}: not a date (YYYY-MM-DD)") from None
    if day > today:
        raise UsageError(f"--date {day}: that day has not begun yet in {settings.timezone}")
    return day


def report_json(report: DailyReport) -> dict[str, Any]:
    """What `--json` prints: every metric by its name, the KB gaps, and the day."""
    return {
        "date": report.day.isoformat(),
        **report.metrics.model_dump(mode="json"),
        "kb_gaps": [gap.model_dump(mode="json") for gap in report.kb_gaps],
        "retrain": report.retrain.model_dump(mode="json") if report.retrain else None,
    }


async def write_daily_report(settings: Settings, pool: asyncpg.Pool, day: date, out_dir: Path,
                             embedder: Embedder | None = None) -> DailyReport:
    """The report of `day` as files, changing nothing: `daily-report-DAY.png` (the chart),
    `daily-report-DAY.html` (the email, its image next to it) and every Slack call in `slack/`."""
    report = await build_report(pool, embedder, day, daily_config(settings), record=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"daily-report-{day.isoformat()}.png"
    png.write_bytes(chart_of(report))
    (out_dir / f"daily-report-{day.isoformat()}.html").write_text(render_html(report, image_src=png.name))
    recorder = RecordingSlack(channels=[settings.slack_metrics_channel])
    await post_report(recorder, settings.slack_metrics_channel, report)
    recorder.write(out_dir / "slack")
    return report


async def _send(settings: Settings, pool: asyncpg.Pool, report: DailyReport) -> list[str]:
    """Deliver what the daily job queued, now (its queued jobs then find it done)."""
    done = []
    slack = clients.slack_client(settings)
    if slack is not None:
        done.append(f"Slack {settings.slack_metrics_channel}: {(await DailyReportService(pool, slack).deliver(report)).value}")
    if settings.leadership_email:
        if settings.gmail_token_file is None or not settings.support_email:
            done.append(f"email to {settings.leadership_email}: queued; Gmail is not configured "
                        "(GMAIL_TOKEN_FILE and SUPPORT_EMAIL)")
        else:
            from pipelines.adapters.gmail_mailbox import GmailMailbox

            mailbox = GmailMailbox(partial(clients.gmail_service, settings), settings.support_email)
            result = await send_report_email(pool, mailbox, report, company=settings.company_name)
            done.append(f"email to {settings.leadership_email}: {result.value}")
    return done


def _print(report: DailyReport) -> None:
    table = Table("figure", "value", "change", title=report.subject)
    for change in report.changes:
        table.add_row(change.label, formatted(change.value, change.unit), formatted_change(change))
    out.print(table)
    out.print(f"KB gaps: {len(report.kb_gaps)}")
    for gap in report.kb_gaps:
        out.print(f"  • {escape(gap.title)} — {len(gap.case_ids)} cases; best article: "
                  f"{escape(gap.best_article) if gap.best_article else 'none'}", highlight=False)


@report_app.command("daily")
@command
async def daily(
    day_text: Annotated[str | None, typer.Option("--date", help="A local day in TIMEZONE, YYYY-MM-DD "
                                                 "(default: yesterday).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics and kb_gaps as one JSON object.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the chart, the email and the Slack calls "
                                                 "into this folder.")] = None,
    send: Annotated[bool, typer.Option("--send", help="Store the day's metrics and deliver the report to Slack "
                                       "and by email, as the scheduled job does (once per day).")] = False,
    embeddings: EmbeddingsOption = None,
) -> None:
    """One day's report: metrics against the previous 7-day average, KB gaps, retraining."""
    settings = settings_from_env(quiet=True)
    day = _day(day_text, settings)
    config = daily_config(settings)
    if send:
        if day >= datetime.now(settings.zone).date():
            raise UsageError(f"--send: {day} is not over yet in {settings.timezone}; its report goes once")
        if not config.destinations():
            raise UsageError("--send: nowhere to send: set SLACK_BOT_TOKEN (SLACK_METRICS_CHANNEL) or LEADERSHIP_EMAIL")
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        if out_dir is not None:
            report = await write_daily_report(settings, pool, day, out_dir, embedder)
        if send:
            report = await run_daily(pool, embedder, day, config)
            sent = await _send(settings, pool, report)
        elif out_dir is None:
            report = await build_report(pool, embedder, day, config, record=False)
    if as_json:
        print(json.dumps(report_json(report)))
        return
    _print(report)
    if out_dir is not None:
        out.print(f"Wrote the chart, the email and the Slack calls to {out_dir}")
    if send:
        for line in sent:
            out.print(f"Sent: {line}")
