"""Past cases imported as cases through the real command: `cx cases import FILE.jsonl --as-cases`.

    python bench/case_import.py [--lines 100000] [--embed-lines 2000 | --embed] [--json]

Writes N past cases as JSONL (BANKING77 texts from ../shared/data/banking77/train.csv with their
intents as labels, or synthetic texts without it; spread over the last 30 days, one customer per
five cases, a few error codes), then in a fresh data directory (embedded PostgreSQL, migrated first
so that start-up is not counted): the import with `--embeddings none`, a re-import of the same file
(which must store nothing), and the local model embedding a subset of the imported cases (the
first --embed-lines lines; all of them with --embed). Reports lines/s, seconds and each command's
peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
CX = [sys.executable, "-c", "from bot.cli.main import main; main()"]

sys.path.insert(0, str(ROOT))

from pipelines.intake.case_history import read_past_cases  # noqa: E402
from pipelines.taxonomy import load_taxonomy  # noqa: E402

CHANNELS = ["email", "web", "chat", "api"]
STATUSES = ["resolved"] * 7 + ["closed"] * 2 + ["escalated"]


def texts() -> tuple[list[tuple[str, str | None]], Path]:
    """(text, label) pairs and the taxonomy that knows the labels."""
    if BANKING77.exists():
        with BANKING77.open(newline="") as handle:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
        return rows, ROOT / "prompts" / "taxonomy-banking.yaml"
    rng = random.Random(1)
    words = "card transfer payment refund account login error pending blocked charge app limit".split()
    return [(" ".join(rng.choices(words, k=12)).capitalize() + ".", None) for _ in range(5000)], \
        ROOT / "prompts" / "taxonomy.yaml"


def write_cases(path: Path, n: int, seed: int) -> Path:
    """Write the file; returns the taxonomy its labels come from."""
    rng = random.Random(seed)
    pool, taxonomy = texts()
    end = datetime.now(UTC) - timedelta(hours=1)
    start = end - timedelta(days=30)
    span = (end - start).total_seconds()
    with path.open("w") as out:
        for i in range(n):
            text, label = rng.choice(pool)
            received = start + timedelta(seconds=rng.random() * span)
            if rng.random() < 0.05:
                text += f" The app shows error E-{rng.randint(1000, 1020)}."
            record: dict[str, object] = {
                "external_id": f"zd-{i}", "received_at": received.isoformat(),
                "customer_email": f"customer{rng.randrange(max(n // 5, 1))}@example.com",
                "customer_name": f"Customer {i % 997}", "subject": text[:60], "description": text,
                "channel": rng.choice(CHANNELS), "priority": rng.choice(["low", "medium", "medium", "high"]),
                "status": rng.choice(STATUSES),
            }
            if label is not None:
                record["category"] = label
            if record["status"] != "escalated":
                first = received + timedelta(minutes=rng.randint(5, 600))
                record["first_response_at"] = min(first, end).isoformat()
                record["resolved_at"] = min(first + timedelta(minutes=rng.randint(0, 2000)), end).isoformat()
                record["resolution_type"] = rng.choice(["self_service", "collaborative", "human"])
                if rng.random() < 0.3:
                    record["csat"] = rng.randint(1, 5)
            out.write(json.dumps(record) + "\n")
    return taxonomy


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) of the command's own process, and its stdout."""
    started = time.perf_counter()
    process = psutil.Popen([*CX, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:
                return
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"cx {' '.join(args)} failed:\n{stderr}")
    return seconds, peak / 2**20, stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--embed-lines", type=int, default=2_000, help="cases the local model embeds (timed apart)")
    parser.add_argument("--embed", action="store_true", help="embed every imported case instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cx-case-import-"))
    path = work / "cases.jsonl"
    taxonomy = write_cases(path, args.lines, args.seed)
    env = {**os.environ, "CX_DATA_DIR": str(work / "data"), "LOG_LEVEL": "warning", "TAXONOMY_PATH": str(taxonomy)}
    env.pop("DATABASE_URL", None)

    started = time.perf_counter()
    read_past_cases(path, load_taxonomy(taxonomy))
    check_seconds = time.perf_counter() - started

    run(["db", "migrate"], env)
    first, first_rss, out = run(["cases", "import", str(path), "--as-cases", "--embeddings", "none", "--json"], env)
    report = json.loads(out.strip().splitlines()[-1])
    again, _, out = run(["cases", "import", str(path), "--as-cases", "--embeddings", "none", "--json"], env)
    again_report = json.loads(out.strip().splitlines()[-1])
    summary: dict[str, object] = {
        "lines": args.lines,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "check_seconds": round(check_seconds, 1),
        "import_seconds": round(first, 1),
        "lines_per_second": round(args.lines / first),
        "import_peak_rss_mb": round(first_rss),
        "created": report["created"],
        "examples_added": report["examples_added"],
        "reimport_seconds": round(again, 1),
        "reimport_created": again_report["created"],
    }

    if importlib.util.find_spec("sentence_transformers") is None:
        summary["embedding"] = "skipped: the local extra is not installed"
    else:
        subset = path
        if not args.embed:
            subset = work / "subset.jsonl"
            with path.open() as source, subset.open("w") as target:
                for _, line in zip(range(args.embed_lines), source):
                    target.write(line)
        seconds, rss, out = run(["cases", "import", str(subset), "--as-cases", "--embeddings", "local", "--json"], env)
        embedded = json.loads(out.strip().splitlines()[-1])
        summary.update({
            "embedded": embedded["embedded"],
            "embedding_model": embedded["embedding_model"],
            "embed_seconds": round(seconds, 1),  # with loading the model and checking the subset file
            "embedded_per_second": round(embedded["embedded"] / seconds, 1),
            "embed_peak_rss_mb": round(rss),
        })
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
