"""`cx triage train` and `cx eval triage`: the local triager's training and its measured quality."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.cli.common import (
    EmbeddingsOption,
    UsageError,
    build_embedder_or_exit,
    command,
    err,
    out,
    settings_from_env,
)
from bot.runtime.database import open_pool, scratch_pool
from bot.settings import Settings
from db import examples as examples_db
from db.pool import transaction
from pipelines.intake.case_history import import_cases, unlabelled_history
from pipelines.taxonomy import TaxonomyError, load_taxonomy
from pipelines.triage.history import HistoryFileError, read_history
from pipelines.triage.history import per_class as history_per_class

if TYPE_CHECKING:
    from pipelines.triage.local.progress import TrainingProgress
    from pipelines.triage.local.triager import TrainReport

triage_app = typer.Typer(help="The local triager.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality.", no_args_is_help=True)

class _Bar:
    """Each training stage as a row of a rich progress bar. The model thread calls it as well as the
    event loop; rich's Progress guards its tasks with a lock of its own."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        if self._task is not None:  # done: a full bar, its clock stopped
            [task] = [t for t in self._bar.tasks if t.id == self._task]
            self._bar.update(self._task, total=task.total or task.completed, completed=task.total or task.completed)
        self._task = self._bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)


class _Lines:
    """Where stderr is a log or a pipe, not a terminal: one line per stage, no bar redrawn in place."""

    def stage(self, name: str, total: int | None) -> None:
        err.print(f"Training: {name}" + (f" ({total})" if total is not None else "") + "…", highlight=False)

    def advance(self, n: int = 1) -> None:
        pass


@contextmanager
def training_progress() -> Iterator[TrainingProgress]:
    """The training's stages on stderr (stdout stays the command's result): a transient bar with
    each stage's name, count and elapsed time on a terminal, a line per stage elsewhere."""
    if not err.is_terminal:
        yield _Lines()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        yield _Bar(bar)


def training_outcome(report: TrainReport, settings: Settings) -> str:
    if report.reused:
        when = report.trained_at.astimezone(settings.zone)
        return (f"History unchanged since {when:%Y-%m-%d %H:%M %Z}: reusing the model trained then "
                f"({report.examples} examples).")
    described = f" and {report.descriptions} taxonomy descriptions" if report.descriptions else ""
    taught = ""
    if report.pseudo_labelled:
        taught = (f" It self-trained on {report.pseudo_labelled} of {report.unlabelled} unlabelled cases, those the "
                  f"model of the examples labelled confidently enough.")
    elif report.unlabelled:
        taught = (f" It did not self-train: the model of the examples labelled too few of the {report.unlabelled} "
                  f"unlabelled cases confidently, or too few labels among them.")
    return (f"Trained a {report.kind} model on {report.examples} examples{described}, {report.labels} labels, "
            f"in {report.seconds:.1f} s ({report.embedded_now} examples embedded now).{taught}")


@triage_app.command("train")
@command
async def triage_train(
    embeddings: EmbeddingsOption = None,
    force: Annotated[bool, typer.Option("--force", help="Train even when the history is unchanged.")] = False,
) -> None:
    """Train the local triager on every labelled example in the database; an unchanged history
    reuses the model trained on it."""
    from pipelines.triage.local.triager import NoLocalModel, train_local

    settings = settings_from_env()
    try:
        taxonomy = load_taxonomy(settings.taxonomy_path)
    except TaxonomyError as exc:
        raise UsageError(str(exc)) from None
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        try:
            with training_progress() as progress:
                report = await train_local(pool, embedder, force=force, progress=progress, taxonomy=taxonomy)
        except NoLocalModel as exc:
            raise UsageError(str(exc)) from None
    out.print(training_outcome(report, settings), highlight=False)


@eval_app.command("triage")
@command
async def eval_triage(
    train_path: Annotated[Path, typer.Option("--train", help="CSV with text,category")],
    test_path: Annotated[Path, typer.Option("--test", help="CSV with text,category")],
    embeddings: EmbeddingsOption = None,
    per_class: Annotated[int | None, typer.Option(
        "--per-class", help="Train on only N rows of each category, drawn with --seed: a new team's history.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Which rows --per-class draws.")] = 0,
    taxonomy_path: Annotated[Path | None, typer.Option(
        "--taxonomy", help="A taxonomy (YAML) that knows every label: its descriptions join the training.")] = None,
    unlabelled_path: Annotated[Path | None, typer.Option(
        "--unlabelled", help="CSV or JSONL with a text column (labels ignored): past cases without labels, "
                             "stored as cases for self-training.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train the local triager on TRAIN in a scratch database and measure it on TEST."""
    from pipelines.triage.evaluation import evaluate
    from pipelines.triage.local.triager import LocalTriager, train_local

    settings = settings_from_env()
    if per_class is not None and per_class < 1:
        raise UsageError("--per-class must be at least 1")
    try:
        taxonomy = load_taxonomy(taxonomy_path) if taxonomy_path is not None else None
        train_rows = read_history(train_path, taxonomy)
        test_rows = read_history(test_path, taxonomy)
        unlabelled = ([r.text for r in read_history(unlabelled_path, None, labelled=False)]
                      if unlabelled_path is not None else [])
    except (HistoryFileError, TaxonomyError) as exc:
        raise UsageError(str(exc)) from None
    if per_class is not None:
        train_rows = history_per_class(train_rows, per_class, seed)
    embedder = build_embedder_or_exit(settings, embeddings)
    async with scratch_pool(settings) as pool:
        async with transaction(pool) as conn:
            await examples_db.add_examples(conn, [(r.text, r.category, r.subcategory, None) for r in train_rows],
                                           source="import")
        if unlabelled:
            await import_cases(pool, unlabelled_history(unlabelled), embedder)
        started = time.perf_counter()
        report = await train_local(pool, embedder, taxonomy=taxonomy)
        train_seconds = time.perf_counter() - started
        triager = LocalTriager(pool, None, embedder)
        texts = [r.text for r in test_rows]
        predicted: list[str] = []
        confidence: list[float] = []
        started = time.perf_counter()
        for i in range(0, len(texts), 256):
            classified = await triager.classify(texts[i : i + 256])
            predicted.extend(classified.labels)
            confidence.extend(float(c) for c in classified.confidence)
        classify_seconds = time.perf_counter() - started
        # Per-case latency is what a live case sees: one text at a time (median and 95th percentile).
        single: list[float] = []
        for text in texts[:100]:
            started = time.perf_counter()
            await triager.classify([text])
            single.append((time.perf_counter() - started) * 1000)
    result = evaluate([r.subcategory or r.category for r in test_rows], predicted, confidence, high=settings.confidence_threshold_high)
    figures = {
        **result.model_dump(exclude={"most_confused"}),
        "most_confused": [p.model_dump() for p in result.most_confused],
        "model": report.kind,
        "embeddings": embedder.model if embedder else None,
        "n_train": len(train_rows),
        "per_class": per_class,
        "seed": seed if per_class is not None else None,
        "unlabelled": report.unlabelled,
        "pseudo_labelled": report.pseudo_labelled,
        "train_seconds": round(train_seconds, 1),
        "classify_seconds": round(classify_seconds, 2),
        "single_case_ms": round(statistics.median(single), 2),
        "single_case_p95_ms": round(float(np.percentile(single, 95)), 2),
    }
    if as_json:
        print(json.dumps(figures))
        return
    table = Table("figure", "value")
    for key in ("n_train", "per_class", "n_test", "accuracy", "macro_f1", "coverage_at_p98", "threshold_at_p98",
                "coverage_at_high", "precision_at_high", "model", "embeddings", "train_seconds", "single_case_ms"):
        value = figures[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)
    confused = Table("expected", "predicted", "count", title="Most confused")
    for pair in result.most_confused:
        confused.add_row(pair.expected, pair.predicted, str(pair.count))
    out.print(confused)
