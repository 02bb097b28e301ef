"""The `cx` command line. Every known failure is one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bot.cli.backup import db_backup, db_restore
from bot.cli.budgets import budget_app
from bot.cli.common import UsageError, command, out, settings_from_env
from bot.cli.customers import customers_app
from bot.cli.detect import alerts_app, detect_app
from bot.cli.gmail import gmail_app
from bot.cli.health import Check, run_checks
from bot.cli.intake import cases_app, intake_app
from bot.cli.kb import eval_kb, kb_app
from bot.cli.metrics import metrics_app
from bot.cli.pii import pii_app
from bot.cli.report import report_app
from bot.cli.stats import stats
from bot.cli.triage import eval_app, triage_app
from bot.cli.usage import usage
from bot.process import ALL_ROLES, parse_roles
from bot.process import run as run_process
from bot.runtime.database import connect, connect_migrated, migrate_database, open_pool, resolve_dsn
from db import jobs as job_queue
from db.migrate import status as migration_status

app = typer.Typer(
    help="CX-Catalyst: an AI customer-support desk that lives in Slack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
jobs_app = typer.Typer(help="The durable job queue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("backup")(db_backup)
db_app.command("restore")(db_restore)
app.add_typer(jobs_app, name="jobs")
app.add_typer(intake_app, name="intake")
app.add_typer(cases_app, name="cases")
app.add_typer(triage_app, name="triage")
app.add_typer(eval_app, name="eval")
eval_app.command("kb")(eval_kb)
app.add_typer(kb_app, name="kb")
app.add_typer(detect_app, name="detect")
app.add_typer(alerts_app, name="alerts")
app.add_typer(metrics_app, name="metrics")
app.add_typer(report_app, name="report")
app.add_typer(pii_app, name="pii")
app.add_typer(budget_app, name="budget")
app.add_typer(customers_app, name="customers")
app.add_typer(gmail_app, name="gmail")
app.command("usage")(usage)
app.command("stats")(stats)

@app.command("run")
@command
async def run_cmd(
    roles: Annotated[
        str, typer.Option(help="Comma-separated roles to run: web, worker, scheduler, slack.")
    ] = ",".join(r.value for r in ALL_ROLES),
    port: Annotated[int | None, typer.Option(help="Web port (default: PORT or 8080).")] = None,
) -> None:
    """Run the product: web server, job workers, scheduler and Slack Socket Mode."""
    settings = settings_from_env()
    await run_process(settings, parse_roles(roles), settings.port if port is None else port)


@app.command()
@command
async def demo(
    inbox: Annotated[Path | None, typer.Option(help="A folder of .eml files (default: the bundled samples).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write the Slack calls "
                                                 "(default: slack-calls/ in the data directory).")] = None,
) -> int:
    """The product offline on the embedded defaults: history, an inbox, triage, drafts, the Slack
    cards it would post (written as JSON), health."""
    from bot.cli.demo import INBOX, run_demo

    settings = settings_from_env(quiet=True)
    if inbox is not None and not inbox.is_dir():
        raise UsageError(f"--inbox {inbox}: not a folder")
    out.print(f"[bold]CX-Catalyst demo[/] — data in {settings.cx_data_dir.resolve()}")
    async with open_pool(settings) as pool:
        await run_demo(settings, pool, out, inbox=inbox or INBOX,
                       slack_out=out_dir or settings.cx_data_dir / "slack-calls")
    checks = await run_checks(settings)
    out.print(_checks_table(checks))
    out.print("Next: [bold]cx run[/] serves webhooks, runs the workers and the scheduler.")
    return 0 if _all_ok(checks) else 1


@db_app.command("migrate")
@command
async def db_migrate() -> None:
    """Apply pending migrations (idempotent)."""
    settings = settings_from_env()
    applied = await migrate_database(await resolve_dsn(settings))
    if not applied:
        out.print("Nothing to apply: the schema is up to date.")
    for migration in applied:
        out.print(f"applied {migration.version:04d}_{migration.name}")


@db_app.command("status")
@command
async def db_status() -> None:
    """List every migration and when it was applied."""
    settings = settings_from_env()
    conn = await connect(await resolve_dsn(settings))
    try:
        rows = await migration_status(conn)
    finally:
        await conn.close()
    table = Table("version", "name", "applied at")
    for row in rows:
        table.add_row(
            f"{row.version:04d}",
            row.name,
            row.applied_at.isoformat(timespec="seconds") if row.applied_at else "[yellow]pending[/]",
        )
    out.print(table)


@app.command("health-check")
@command
async def health_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> int:
    """Check each dependency: configured or not, reachable or not. Exit 1 if a configured one fails."""
    settings = settings_from_env()
    checks = await run_checks(settings)
    if as_json:
        print(json.dumps({"ok": _all_ok(checks), "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        out.print(_checks_table(checks))
    return 0 if _all_ok(checks) else 1


def _all_ok(checks: Sequence[Check]) -> bool:
    return all(c.ok is not False for c in checks)


def _checks_table(checks: Sequence[Check]) -> Table:
    table = Table("dependency", "configured", "reachable", "detail", "ms")
    for c in checks:
        reachable = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[c.ok]
        table.add_row(
            c.name,
            "yes" if c.configured else "no",
            reachable,
            c.detail,
            f"{c.latency_ms:.0f}" if c.latency_ms is not None else "",
        )
    return table


@jobs_app.command("list")
@command
async def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, picked or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Jobs in the queue, newest first."""
    if status not in (None, "queued", "picked", "failed"):
        raise UsageError(f"--status must be queued, picked or failed, not {status!r}")
    await _print_jobs(status, limit)


@jobs_app.command("failed")
@command
async def jobs_failed(limit: Annotated[int, typer.Option(min=1, max=1000)] = 50) -> None:
    """Jobs that used up their attempts, with their last error."""
    await _print_jobs("failed", limit)


async def _print_jobs(status: str | None, limit: int) -> None:
    settings = settings_from_env()
    conn = await connect_migrated(settings)
    try:
        rows = await job_queue.list_jobs(conn, status=status, limit=limit)
    finally:
        await conn.close()
    table = Table("id", "job", "status", "attempts", "created", "last error")
    for job in rows:
        table.add_row(
            str(job.id),
            job.entrypoint,
            job.status,
            str(job.attempts),
            job.created.isoformat(timespec="seconds"),
            (job.last_error or "")[:120],
        )
    out.print(table if rows else "No jobs.")


@jobs_app.command("retry")
@command
async def jobs_retry(job_id: Annotated[int, typer.Argument(help="The id shown by `cx jobs failed`.")]) -> None:
    """Queue a failed job again with a fresh attempt budget."""
    settings = settings_from_env()
    conn = await connect_migrated(settings)
    try:
        await job_queue.retry_failed(conn, job_id)
    except job_queue.JobNotFailed as exc:
        raise UsageError(str(exc)) from None
    finally:
        await conn.close()
    out.print(f"Job {job_id} is queued again.")


def main(argv: Sequence[str] | None = None) -> None:
    app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="cx")
