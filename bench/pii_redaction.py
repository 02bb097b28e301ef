"""Redaction quality and speed: precision and recall per type on samples/pii/snippets.jsonl, and
the median time to redact a typical email (the bundled inbox's bodies).

    python bench/pii_redaction.py [--json]

A finding counts as a true positive when its type and exact value are labelled in that snippet."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.privacy.redaction import TYPES, find, redact  # noqa: E402

SNIPPETS = ROOT / "samples" / "pii" / "snippets.jsonl"
INBOX = ROOT / "samples" / "inbox"


def quality(path: Path = SNIPPETS) -> dict[str, Any]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    misses: list[dict[str, str]] = []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        expected = Counter((p["type"], p["value"]) for p in row["pii"])
        found = Counter((f.kind, f.value) for f in find(row["text"]))
        for key in expected | found:
            hit = min(expected[key], found[key])
            tp[key[0]] += hit
            fp[key[0]] += found[key] - hit
            fn[key[0]] += expected[key] - hit
            if found[key] != expected[key]:
                misses.append({"text": row["text"], "type": key[0], "value": key[1],
                               "error": "missed" if expected[key] > found[key] else "false positive"})

    def scores(t: int, f_p: int, f_n: int) -> dict[str, Any]:
        return {"labelled": t + f_n, "found": t + f_p, "precision": round(t / (t + f_p), 4) if t + f_p else 1.0,
                "recall": round(t / (t + f_n), 4) if t + f_n else 1.0}

    per_type = {k: scores(tp[k], fp[k], fn[k]) for k in TYPES}
    overall = scores(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"snippets": len(rows), "near_misses": sum(1 for r in rows if not r["pii"]),
            "per_type": per_type, "overall": overall, "errors": misses}


def email_bodies() -> list[str]:
    bodies = []
    for eml in sorted(INBOX.glob("*.eml")):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain",))
        bodies.append(f"From: {msg['From']}\nSubject: {msg['Subject']}\n\n{part.get_content() if part else ''}")
    return bodies


def speed(repeats: int = 200) -> dict[str, Any]:
    bodies = email_bodies()
    timings = []
    for _ in range(repeats):
        for body in bodies:
            start = time.perf_counter()
            redact(body)
            timings.append((time.perf_counter() - start) * 1000)
    # A longer message too: the inbox's bodies run together to about 1.5 KB.
    long = "\n\n".join(bodies)[:1536]
    long_timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        redact(long)
        long_timings.append((time.perf_counter() - start) * 1000)
    return {"emails": len(bodies), "median_chars": statistics.median(len(b) for b in bodies),
            "median_ms": round(statistics.median(timings), 4), "p95_ms": round(sorted(timings)[int(len(timings) * .95)], 4),
            "median_ms_1536_chars": round(statistics.median(long_timings), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {**quality(), "speed": speed()}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    print(f"{result['snippets']} snippets ({result['near_misses']} near-misses)")
    print(f"{'type':8} {'labelled':>8} {'found':>6} {'precision':>9} {'recall':>7}")
    for kind, s in [*result["per_type"].items(), ("overall", result["overall"])]:
        print(f"{kind:8} {s['labelled']:>8} {s['found']:>6} {s['precision']:>9.3f} {s['recall']:>7.3f}")
    for e in result["errors"]:
        print(f"  {e['error']}: {e['type']} {e['value']!r} in {e['text']!r}")
    sp = result["speed"]
    print(f"redact a typical email ({sp['median_chars']} chars): median {sp['median_ms']} ms, p95 {sp['p95_ms']} ms; "
          f"1536 chars: median {sp['median_ms_1536_chars']} ms")


if __name__ == "__main__":
    main()
