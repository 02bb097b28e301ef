"""What every `cx` command shares: the consoles, settings loading and the error funnel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.process import UnknownRole
from bot.runtime.database import DatabaseUnavailable
from bot.runtime.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings
from db.embedding_space import EmbeddingSpaceMismatch
from db.migrate import MigrationError
from pipelines.detection.thresholds import ThresholdsError
from pipelines.ports import Embedder
from pipelines.taxonomy import TaxonomyError

EXIT_USAGE = 2

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """Bad input from the user: printed as is, exit code 2."""


_KNOWN_FAILURES = (SettingsError, DatabaseUnavailable, MigrationError, UnknownRole, UsageError, TaxonomyError,
                   EmbeddingSpaceMismatch, ThresholdsError)


def _run(coro: Coroutine[Any, Any, int | None]) -> int | None:
    try:
        import uvloop  # a faster event loop where it exists (not on Windows)
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def command(func: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run an async command: settings first, known failures as one message with exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = _run(func(*args, **kwargs))
        except _KNOWN_FAILURES as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("CX_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                "Run again with CX_DEBUG=1 to see the traceback, and please report it.",
                highlight=False,
            )
            raise typer.Exit(1) from None
        raise typer.Exit(code or 0)

    return wrapper


def settings_from_env(*, quiet: bool = False) -> Settings:
    """The settings, and logging set up from them; `quiet` keeps info logs out of a report."""
    settings = load_settings()
    configure_logging("warning" if quiet and settings.log_level in ("debug", "info") else settings.log_level,
                      settings.log_format)
    return settings


EmbeddingsOption = Annotated[
    str | None, typer.Option("--embeddings", help="local, openai or none (default: the EMBEDDINGS setting)")
]


def build_embedder_or_exit(settings: Settings, mode: str | None) -> Embedder | None:
    """The embedder asked for on the command line, or a usage error naming what is missing."""
    from bot.ai import build_embedder  # sentence-transformers and friends load only when asked

    if mode not in (None, "auto", "local", "openai", "none"):
        raise UsageError(f"--embeddings must be local, openai or none, not {mode!r}")
    try:
        return build_embedder(settings, mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

