"""Knowledge-base ingestion through the real command: `cx kb import` of generated articles.

    python bench/kb_ingest.py [--articles 1000] [--embeddings local|none] [--json]

Writes N Markdown articles (front matter, three sections, ~350 words each, built from the demo
knowledge base's own vocabulary) to a temporary folder, then runs `cx kb import` twice in a fresh
data directory (embedded PostgreSQL): the first import (parse, chunk, store, embed) and a re-import
of the unchanged folder (which must embed nothing). Reports wall time and the command's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vocabulary() -> list[str]:
    words: list[str] = []
    for path in sorted((ROOT / "samples" / "kb").glob("*.md")):
        words += re.findall(r"[A-Za-z][a-z]{2,}", path.read_text().split("---", 2)[-1])
    return words


def write_articles(folder: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    words = vocabulary()
    categories = ["card_delivery", "card_usage", "card_payments", "cash", "top_up", "transfers", "exchange", "account"]
    for i in range(n):
        sections = []
        for _ in range(3):
            paragraphs = [" ".join(rng.choices(words, k=rng.randint(40, 80))) + "." for _p in range(2)]
            sections.append(f"## {' '.join(rng.choices(words, k=3)).capitalize()}\n\n" + "\n\n".join(paragraphs))
        title = " ".join(rng.choices(words, k=5)).capitalize()
        (folder / f"article-{i:05d}.md").write_text(
            f"---\ntitle: {title}\ncategory: {rng.choice(categories)}\ntags: {json.dumps(rng.choices(words, k=3))}\n"
            f"url: https://help.example/{i}\n---\n\n{' '.join(rng.choices(words, k=30))}.\n\n" + "\n\n".join(sections)
        )


def run_import(folder: Path, env: dict[str, str], embeddings: str) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from bot.cli.main import main; main()", "kb", "import", str(folder),
                           "--embeddings", embeddings, "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cx kb import failed:\n{done.stderr}")
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--embeddings", default="local")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cx-kb-ingest-"))
    folder = work / "kb"
    folder.mkdir()
    write_articles(folder, args.articles, args.seed)
    env = {**os.environ, "CX_DATA_DIR": str(work / "data"), "LOG_LEVEL": "warning"}
    env.pop("DATABASE_URL", None)
    # A first run that imports nothing starts and migrates the embedded server, so that its
    # start-up is not counted as ingestion.
    empty = work / "empty"
    empty.mkdir()
    run_import(empty, env, "none")

    first, report = run_import(folder, env, args.embeddings)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    again, again_report = run_import(folder, env, args.embeddings)
    summary = {
        "articles": args.articles,
        "embeddings": args.embeddings,
        "chunks": report["chunks"],
        "chunks_embedded": report["chunks_embedded"],
        "first_import_seconds": round(first, 1),
        "articles_per_second": round(args.articles / first, 1),
        "peak_rss_mb": round(peak_mb),
        "reimport_seconds": round(again, 1),
        "reimport_unchanged": again_report["unchanged"],
        "reimport_embedded": again_report["chunks_embedded"],
    }
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
