"""`cx intake eml|mbox|post` and `cx cases import`: bringing requests and history in from files."""

from __future__ import annotations

import json
import mailbox
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from bot.cli.common import EmbeddingsOption, UsageError, build_embedder_or_exit, command, err, out, settings_from_env
from bot.cli.signed_post import post_signed, read_json_file, webhook_secret
from bot.runtime.database import open_pool
from db import examples as examples_db
from db.pool import transaction
from pipelines.intake.email import EmailSource, intake_email
from pipelines.models import Intake, IntakeOutcome
from pipelines.taxonomy import TaxonomyError, load_taxonomy
from pipelines.triage.history import HistoryFileError, read_history

intake_app = typer.Typer(help="Bring customer requests in from files or a web form.", no_args_is_help=True)
cases_app = typer.Typer(help="Case history: labelled examples, or past cases as cases.", no_args_is_help=True)


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
    secret = webhook_secret(settings_from_env())
    body, _ = read_json_file(path)
    return await post_signed(secret, url, body)


@cases_app.command("import")
@command
async def cases_import(
    path: Annotated[Path, typer.Argument(
        help="CSV or JSONL with text,category[,subcategory,priority]; with --as-cases, JSONL of past cases")],
    as_cases: Annotated[bool, typer.Option("--as-cases", help="Store each line as a past case.")] = False,
    embeddings: EmbeddingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Import labelled history for the local triager (no live cases are created), or with
    --as-cases past cases as cases.

    With --as-cases, each line of the JSONL file is one past case: external_id, received_at,
    customer_email and description, and optionally customer_name, subject, channel, category,
    subcategory, priority, status, first_response_at, resolved_at, resolution_type and csat (other
    keys are ignored). It is stored as a case of channel `import` (its own channel is kept as
    metadata source_channel) with its timestamps, labels and the error codes found in its text.
    Timestamps are ISO 8601; without a time zone they are taken as UTC. A line without a status is
    `resolved` if it has resolved_at, else `closed`: history is not live work. No AI runs, no job
    is queued, no reply is sent.

    The whole file is checked first: a bad line is named and nothing is stored. A case already
    imported (same external_id) is left as it is. Lines with a category also become labelled
    examples. New cases are embedded with the configured model (--embeddings none skips it; running
    the import again embeds the cases still without a vector)."""
    if as_cases:
        await _import_past_cases(path, embeddings, as_json)
        return
    if embeddings is not None:
        raise UsageError("--embeddings goes with --as-cases; `cx triage train` embeds labelled history")
    settings = settings_from_env(quiet=as_json)
    try:
        taxonomy = load_taxonomy(settings.taxonomy_path)
        rows = read_history(path, taxonomy)
    except (HistoryFileError, TaxonomyError) as exc:
        raise UsageError(str(exc)) from None
    async with open_pool(settings) as pool, transaction(pool) as conn:
        added = await examples_db.add_examples(
            conn, [(r.text, r.category, r.subcategory, r.priority) for r in rows], source="import"
        )
    if as_json:
        print(json.dumps({"rows": len(rows), "new": added, "known": len(rows) - added}))
        return
    out.print(f"{len(rows)} rows read, {added} new labelled examples, {len(rows) - added} already known.")


class _Bar:
    """The import's stages as rich progress bars on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def stage(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total)

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, done)


async def _import_past_cases(path: Path, embeddings: str | None, as_json: bool) -> None:
    from pipelines.intake.case_history import CaseHistoryError, import_cases, read_past_cases

    settings = settings_from_env(quiet=as_json)
    try:
        taxonomy = load_taxonomy(settings.taxonomy_path)
        with err.status(f"checking {path}"):
            cases = read_past_cases(path, taxonomy)
    except (CaseHistoryError, TaxonomyError) as exc:
        raise UsageError(str(exc)) from None
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        with Progress(console=err, transient=True) as progress:
            report = await import_cases(pool, cases, embedder, progress=_Bar(progress))
    summary = {"lines": report.lines, "created": report.created, "existing": report.existing,
               "examples_added": report.examples_added, "embedded": report.embedded,
               "unembedded": report.unembedded, "embedding_model": report.embedding_model}
    if as_json:
        print(json.dumps(summary))
        return
    out.print(f"{report.lines} lines read: {report.created} new cases, {report.existing} already there; "
              f"{report.examples_added} new labelled examples.")
    if embedder is None:
        out.print(f"No embeddings (EMBEDDINGS=none): {report.unembedded} imported cases have no vector, so the "
                  "cluster detector does not see them; import again with --embeddings local or openai to embed them.")
    else:
        out.print(f"{report.embedded} cases embedded with {embedder.provider} {embedder.model}"
                  + (f"; {report.unembedded} still without a vector." if report.unembedded else "."))
