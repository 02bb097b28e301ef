"""Local triage quality by k-fold cross-validation, through the real `cx eval triage` command.

    python bench/triage_quality.py [--data ../shared/data/banking77/train.csv] [--folds 5]
                                   [--embeddings local|none] [--per-class N] [--taxonomy FILE] [--json]

Splits the labelled file into stratified folds, runs `cx eval triage --train … --test … --json`
on each (a scratch database per fold), and reports each fold and the mean of every figure.
`--per-class N` trains each fold on only N examples of each label (drawn with the fold's number as
seed) and still tests on the whole held-out fold: a new team's cold start, averaged over the folds.
With `--unlabelled`, the rest of the fold's training rows join as past cases without their labels
(`cx eval triage --unlabelled`): a new team that labelled N per label of a history it already has.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipelines.triage.history import per_class, read_history  # noqa: E402

FIGURES = ("accuracy", "macro_f1", "coverage_at_p98", "coverage_at_high", "precision_at_high", "train_seconds",
           "single_case_ms", "pseudo_labelled")


def stratified_folds(rows: list[dict[str, str]], k: int, seed: int) -> list[list[int]]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["category"]].append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    rng = random.Random(seed)
    offset = 0
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[(j + offset) % k].append(i)
        offset += len(members)
    return folds


def mean(values: list[float | None]) -> float | None:
    """The mean of the folds that have the figure (precision at HIGH: none when no case gets there)."""
    known = [v for v in values if v is not None]
    return round(statistics.mean(known), 4) if known else None


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "category": r["category"]} for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77" / "train.csv")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embeddings", default="local")
    parser.add_argument("--per-class", type=int)
    parser.add_argument("--taxonomy", type=Path)
    parser.add_argument("--unlabelled", action="store_true", help="with --per-class: the undrawn rows, unlabelled")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = list(csv.DictReader(args.data.open(newline="")))
    folds = stratified_folds(rows, args.folds, args.seed)
    work = Path(tempfile.mkdtemp(prefix="cx-eval-"))
    env = {**os.environ, "LOG_LEVEL": "warning"}
    env.setdefault("CX_DATA_DIR", str(work / "data"))
    results = []
    for n, test_idx in enumerate(folds):
        held = set(test_idx)
        write(work / "train.csv", [r for i, r in enumerate(rows) if i not in held])
        write(work / "test.csv", [rows[i] for i in test_idx])
        if args.unlabelled and args.per_class:
            # The command's own draw, to leave out exactly the rows it labels.
            drawn = {r.text for r in per_class(read_history(work / "train.csv", None), args.per_class, n)}
            write(work / "unlabelled.csv", [r for i, r in enumerate(rows) if i not in held and r["text"] not in drawn])
        done = subprocess.run(
            [sys.executable, "-c", "from bot.cli.main import main; main()", "eval", "triage",
             "--train", str(work / "train.csv"), "--test", str(work / "test.csv"),
             "--embeddings", args.embeddings, "--json",
             *(["--per-class", str(args.per_class), "--seed", str(n)] if args.per_class else []),
             *(["--taxonomy", str(args.taxonomy.resolve())] if args.taxonomy else []),
             *(["--unlabelled", str(work / "unlabelled.csv")] if args.unlabelled and args.per_class else [])],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"fold {n}: cx eval triage failed:\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(figures)
        if not args.json:
            print(f"fold {n}: " + " ".join(f"{k}={figures.get(k)}" for k in FIGURES), flush=True)
    summary = {
        "data": str(args.data),
        "folds": args.folds,
        "embeddings": args.embeddings,
        "per_class": args.per_class,
        "taxonomy": str(args.taxonomy) if args.taxonomy else None,
        "unlabelled": bool(args.unlabelled and args.per_class),
        "model": results[0]["model"],
        **{f"mean_{k}": mean([r.get(k) for r in results]) for k in FIGURES},
        **{f"min_{k}": round(min(r[k] for r in results), 4) for k in ("accuracy", "coverage_at_p98")},
        "median_single_case_ms": round(statistics.median(r["single_case_ms"] for r in results), 2),
    }
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
