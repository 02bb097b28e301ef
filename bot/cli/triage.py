"""`cx triage train` and `cx eval triage`: the local triager's training and its measured quality."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from bot.cli.common import EmbeddingsOption, UsageError, build_embedder_or_exit, command, out, settings_from_env
from bot.runtime.database import open_pool, scratch_pool
from db import examples as examples_db
from db.pool import transaction
from pipelines.triage.history import HistoryFileError, read_history
from pipelines.triage.history import per_class as history_per_class

triage_app = typer.Typer(help="The local triager.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality.", no_args_is_help=True)

@triage_app.command("train")
@command
async def triage_train(embeddings: EmbeddingsOption = None) -> None:
    """Train the local triager on every labelled example in the database."""
    from pipelines.triage.local.triager import NoLocalModel, train_local

    settings = settings_from_env()
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        try:
            report = await train_local(pool, embedder)
        except NoLocalModel as exc:
            raise UsageError(str(exc)) from None
    out.print(f"Trained a {report.kind} model on {report.examples} examples and {report.labels} labels "
              f"in {report.seconds:.1f} s ({report.embedded_now} examples embedded now).")


@eval_app.command("triage")
@command
async def eval_triage(
    train_path: Annotated[Path, typer.Option("--train", help="CSV with text,category")],
    test_path: Annotated[Path, typer.Option("--test", help="CSV with text,category")],
    embeddings: EmbeddingsOption = None,
    per_class: Annotated[int | None, typer.Option(
        "--per-class", help="Train on only N rows of each category, drawn with --seed: a new team's history.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Which rows --per-class draws.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train the local triager on TRAIN in a scratch database and measure it on TEST."""
    from pipelines.triage.evaluation import evaluate
    from pipelines.triage.local.triager import LocalTriager, train_local

    settings = settings_from_env()
    if per_class is not None and per_class < 1:
        raise UsageError("--per-class must be at least 1")
    try:
        train_rows = read_history(train_path, None)
        test_rows = read_history(test_path, None)
    except HistoryFileError as exc:
        raise UsageError(str(exc)) from None
    if per_class is not None:
        train_rows = history_per_class(train_rows, per_class, seed)
    embedder = build_embedder_or_exit(settings, embeddings)
    async with scratch_pool(settings) as pool:
        async with transaction(pool) as conn:
            await examples_db.add_examples(conn, [(r.text, r.category, None, None) for r in train_rows], source="import")
        started = time.perf_counter()
        report = await train_local(pool, embedder)
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
    result = evaluate([r.category for r in test_rows], predicted, confidence, high=settings.confidence_threshold_high)
    figures = {
        **result.model_dump(exclude={"most_confused"}),
        "most_confused": [p.model_dump() for p in result.most_confused],
        "model": report.kind,
        "embeddings": embedder.model if embedder else None,
        "n_train": len(train_rows),
        "per_class": per_class,
        "seed": seed if per_class is not None else None,
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
