"""`cx budget set|off`: the AI budgets in dollars (token_budgets), per Claude step or overall."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from bot.cli.common import UsageError, command, out, settings_from_env
from bot.model_tiers import MODEL_TIERS
from bot.runtime.database import connect_migrated
from db import budgets as budgets_db

budget_app = typer.Typer(help="AI budgets: daily or monthly dollar limits that degrade, not stop, the product.",
                         no_args_is_help=True)
PERIODS = ("daily", "monthly")
PROVIDERS = ("anthropic", "openai", "local")


def _decimal(value: str, option: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise UsageError(f"{option} {value!r}: not a number") from None


@budget_app.command("set")
@command
async def set_budget(
    name: Annotated[str, typer.Argument(help="The budget's name; setting it again replaces it.")],
    limit_usd: Annotated[str, typer.Option("--limit-usd", help="The limit in US dollars.")],
    period: Annotated[str, typer.Option(help="daily or monthly, in TIMEZONE.")] = "daily",
    step: Annotated[str | None, typer.Option(help="Only this step's calls (default: every step).")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider's calls (default: all).")] = None,
    warn_at: Annotated[str, typer.Option(help="The share of the limit that posts the warning.")] = "0.8",
) -> None:
    """Create or replace a budget."""
    limit, warn = _decimal(limit_usd, "--limit-usd"), _decimal(warn_at, "--warn-at")
    if period not in PERIODS:
        raise UsageError(f"--period {period!r}: choose daily or monthly")
    if not limit > 0:
        raise UsageError(f"--limit-usd {limit_usd}: must be more than 0")
    if not 0 < warn <= 1:
        raise UsageError(f"--warn-at {warn_at}: must be more than 0 and at most 1")
    if step is not None and step not in MODEL_TIERS:
        raise UsageError(f"--step {step!r}: choose one of {', '.join(sorted(MODEL_TIERS))}")
    if provider is not None and provider not in PROVIDERS:
        raise UsageError(f"--provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    conn = await connect_migrated(settings_from_env(quiet=True))
    try:
        await budgets_db.set_budget(conn, name, period="daily" if period == "daily" else "monthly",
                                    limit_usd=limit, warn_at=warn, step=step, provider=provider)
    finally:
        await conn.close()
    out.print(f"Budget {name!r}: ${limit} {period}, {step or 'every step'}, {provider or 'every provider'}; "
              f"warning at {warn:.0%}")


@budget_app.command("off")
@command
async def off(name: Annotated[str, typer.Argument(help="The budget to switch off.")]) -> None:
    """Switch a budget off (it stays in the table, inactive)."""
    conn = await connect_migrated(settings_from_env(quiet=True))
    try:
        if not await budgets_db.deactivate(conn, name):
            raise UsageError(f"no active budget named {name!r}")
    finally:
        await conn.close()
    out.print(f"Budget {name!r} is off")
