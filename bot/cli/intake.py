"""`cx intake eml|mbox|post` and `cx cases import`: bringing requests and history in from files."""

from __future__ import annotations

import json
import mailbox
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from rich.progress import Progress
from rich.table import Table

from bot.cli.common import UsageError, command, err, out, settings_from_env
from bot.runtime.database import open_pool
from db import examples as examples_db
from db.pool import transaction
from pipelines.intake.email import EmailSource, intake_email
from pipelines.models import Intake, IntakeOutcome
from pipelines.signatures import signed_headers
from pipelines.taxonomy import TaxonomyError, load_taxonomy
from pipelines.triage.history import HistoryFileError, read_history

intake_app = typer.Typer(help="Bring customer requests in from files or a web form.", no_args_is_help=True)
cases_app = typer.Typer(help="Labelled case history.", no_args_is_help=True)


def _eml_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.eml") if p.is_file())
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path}: no such file or directory")


async def _import_messages(messages: list[tuple[str, bytes | Exception]]) -> int:
    settings = settings_from_env()
    own = {a.lower() for a in (settings.support_email,) if a}
    results: list[tuple[str, Intake | Exception]] = []
    async with open_pool(settings) as pool:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("importing", total=len(messages))
            for name, raw in messages:
                if isinstance(raw, Exception):
                    results.append((name, raw))
                else:
                    try:
                        results.append((name, await intake_email(
                            pool, raw, source=EmailSource(channel="import"), own_addresses=own,
                            reopen_window=settings.reopen_window,
                        )))
                    except Exception as exc:  # one bad message must not stop the import; it is reported
                        results.append((name, exc))
                progress.advance(task)
    counts: Counter[str] = Counter()
    table = Table("message", "outcome", "case", "detail")
    for name, result in results:
        if isinstance(result, Exception):
            counts["failed"] += 1
            table.add_row(name, "[red]failed[/]", "", f"{type(result).__name__}: {result}")
            continue
        outcome = "appended" if result.outcome is IntakeOutcome.APPENDED else result.outcome.value
        counts[outcome] += 1
        ref = f"CX-{result.short_id}" if result.short_id else (str(result.case_id)[:8] if result.case_id else "")
        table.add_row(name, outcome, ref, result.reason or "")
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to import")
    return 1 if counts["failed"] else 0


@intake_app.command("eml")
@command
async def intake_eml(paths: Annotated[list[Path], typer.Argument(help=".eml files or folders of them")]) -> int:
    """Import .eml files as cases (follow-ups join their thread)."""
    messages: list[tuple[str, bytes | Exception]] = []
    for path in _eml_files(paths):
        try:
            messages.append((str(path), path.read_bytes()))
        except OSError as exc:
            messages.append((str(path), exc))
    return await _import_messages(messages)


@intake_app.command("mbox")
@command
async def intake_mbox(path: Annotated[Path, typer.Argument(help="an mbox file")]) -> int:
    """Import every message of an mbox file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    box = mailbox.mbox(path, create=False)
    messages: list[tuple[str, bytes | Exception]] = []
    for number, key in enumerate(box.keys(), 1):
        try:
            messages.append((f"{path.name}#{number}", box.get_bytes(key)))
        except Exception as exc:  # a damaged entry is reported, the rest still imported
            messages.append((f"{path.name}#{number}", exc))
    return await _import_messages(messages)


@intake_app.command("post")
@command
async def intake_post(
    path: Annotated[Path, typer.Argument(help="a JSON request body")],
    url: Annotated[str, typer.Option(help="the intake endpoint")] = "http://127.0.0.1:8080/webhooks/intake",
) -> int:
    """Sign a JSON body with WEBHOOK_SECRET and POST it to the intake webhook."""
    settings = settings_from_env()
    secret = settings.secret("webhook_secret")
    if secret is None:
        raise UsageError("WEBHOOK_SECRET is not set")
    try:
        body = path.read_bytes()
        json.loads(body)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise UsageError(f"{path}:{line}: not JSON: {exc}" if line else f"{path}: not JSON: {exc}") from None
    headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
            answer = await response.text()
    except aiohttp.ClientError as exc:
        raise UsageError(f"cannot reach {url}: {exc}") from None
    out.print(f"{response.status} {answer}")
    return 0 if response.status < 400 else 1


@cases_app.command("import")
@command
async def cases_import(
    path: Annotated[Path, typer.Argument(help="CSV or JSONL with text,category[,subcategory,priority]")],
) -> None:
    """Import labelled history for the local triager (no live cases are created)."""
    settings = settings_from_env()
    try:
        taxonomy = load_taxonomy(settings.taxonomy_path)
        rows = read_history(path, taxonomy)
    except (HistoryFileError, TaxonomyError) as exc:
        raise UsageError(str(exc)) from None
    async with open_pool(settings) as pool, transaction(pool) as conn:
        added = await examples_db.add_examples(
            conn, [(r.text, r.category, r.subcategory, r.priority) for r in rows], source="import"
        )
    out.print(f"{len(rows)} rows read, {added} new labelled examples, {len(rows) - added} already known.")
