"""The gated retrain on a real labelled set: its time and its two cross-validated accuracies.

    python bench/retrain.py [--data ../shared/data/banking77/train.csv] [--new 0.2] [--runs 3]
                            [--embeddings none|local] [--json]

Each run, in a scratch database (dropped afterwards), with the rows shuffled by the run's seed:
1. imports all but the `--new` share and trains the active model (`train_local`, as `cx triage train`);
2. "clean": adds the held-back share as reviewer corrections, then runs the RETRAIN job's
   `retrain` (timed): a candidate that learned more data should be kept;
3. "noisy": adds as many examples again, texts drawn from the set with their labels shuffled
   (a bad import), then `retrain` again: the candidate should be rejected.
Prints the median over the runs of each scenario's seconds and accuracies (and every run).
Only the train split is used; nothing here looks at a test split.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.ai import build_embedder  # noqa: E402
from bot.runtime.database import scratch_pool  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from db import examples as examples_db  # noqa: E402
from db.pool import transaction  # noqa: E402
from pipelines.learning.retrain import retrain  # noqa: E402
from pipelines.triage.local.triager import train_local  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


async def add(pool: Any, rows: list[tuple[str, str]], source: str) -> None:
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [(t, c, None, None) for t, c in rows], source=source)


async def one_run(settings: Any, embedder: Any, rows: list[tuple[str, str]], new_share: float,
                  seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    cut = int(len(rows) * (1 - new_share))
    old, new = rows[:cut], rows[cut:]
    sampled = rng.sample(rows, len(new))
    labels = [c for _, c in sampled]
    rng.shuffle(labels)
    noisy = [(t, c) for (t, _), c in zip(sampled, labels)]
    result: dict[str, Any] = {"seed": seed, "old": len(old), "new": len(new)}
    async with scratch_pool(settings) as pool:
        await add(pool, old, "import")
        started = time.perf_counter()
        await train_local(pool, embedder)
        result["train_seconds"] = round(time.perf_counter() - started, 1)
        for scenario, batch, source in (("clean", new, "correction"), ("noisy", noisy, "case")):
            await add(pool, batch, source)
            started = time.perf_counter()
            outcome = await retrain(pool, embedder)
            result[scenario] = {
                "seconds": round(time.perf_counter() - started, 1),
                "examples": outcome.examples,
                "new_examples": outcome.new_examples,
                "candidate_accuracy": round(outcome.candidate_accuracy, 4),
                "current_accuracy": None if outcome.current_accuracy is None else round(outcome.current_accuracy, 4),
                "kept": outcome.kept,
            }
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"train_seconds": statistics.median(r["train_seconds"] for r in runs)}
    for scenario in ("clean", "noisy"):
        parts = [r[scenario] for r in runs]
        summary[scenario] = {
            key: statistics.median(p[key] for p in parts)
            for key in ("seconds", "candidate_accuracy", "current_accuracy", "examples", "new_examples")
        } | {"kept": sum(p["kept"] for p in parts)}
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77" / "train.csv")
    parser.add_argument("--new", type=float, default=0.2, help="share of the rows added after the first training")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--embeddings", default="none")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = load_settings()
    if settings.database_url is None and "CX_DATA_DIR" not in os.environ:
        settings = load_settings(cx_data_dir=Path(tempfile.mkdtemp(prefix="cx-bench-")))
    embedder = build_embedder(settings, args.embeddings)
    with args.data.open(newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    runs = [await one_run(settings, embedder, rows, args.new, seed) for seed in range(args.runs)]
    figures = {"data": str(args.data), "rows": len(rows), "runs": args.runs,
               "embeddings": embedder.model if embedder else None, "median": medians(runs), "each": runs}
    if args.json:
        print(json.dumps(figures))
        return
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    configure_logging("warning", "console")
    asyncio.run(main())
