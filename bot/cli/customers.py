"""`cx customers erase EMAIL [--yes]`: a customer's personal data erased on request."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import UsageError, command, out, settings_from_env
from bot.runtime.database import open_pool
from pipelines.privacy.erasure import Erasure, UnknownCustomer, erase_customer

customers_app = typer.Typer(help="Customers: erasing one's personal data on request.", no_args_is_help=True)


@customers_app.command("erase")
@command
async def erase(
    email: Annotated[str, typer.Argument(help="The customer's email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking (needed when not at a terminal).")] = False,
) -> int:
    """Erase one customer's texts, drafts, replies, search logs, embeddings and redaction maps; keep the
    anonymous figures. Shows what it would remove and asks first, unless --yes."""
    if not yes and not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: run again with --yes to erase")
    settings = settings_from_env(quiet=True)
    async with open_pool(settings) as pool:
        try:
            if not yes:
                out.print(_table(await erase_customer(pool, email, dry_run=True), f"Would erase {escape(email)}"))
                if not typer.confirm("Erase it? This cannot be undone.", default=False):
                    out.print("Nothing was erased.")
                    return 1
            result = await erase_customer(pool, email)
        except UnknownCustomer as exc:
            raise UsageError(str(exc)) from None
    out.print(_table(result, f"Erased {escape(email)}"))
    if result.slack_messages:
        out.print(f"{result.slack_messages} Slack message(s) about these cases will say the content was erased "
                  "(a queued job).")
    return 0


def _table(erasure: Erasure, title: str) -> Table:
    table = Table("table", "action", "columns", "rows", title=f"{title}: {erasure.cases} case(s)")
    for removed in erasure.removed:
        table.add_row(removed.table, removed.action, removed.columns, str(removed.rows))
    table.add_row("slack_messages", "queued for rewrite", "text, blocks", str(erasure.slack_messages))
    return table
