"""Labelled history files (`text,category[,subcategory,priority]` as CSV or JSONL), read and checked
whole before anything is stored, so a bad line changes nothing and is named with its line number."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.taxonomy import Taxonomy

PRIORITIES = {"critical", "high", "medium", "low"}


class HistoryFileError(ValueError):
    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class LabelledRow:
    text: str
    category: str
    subcategory: str | None
    priority: str | None


def _row(path: Path, line: int, record: dict[str, object], taxonomy: Taxonomy | None,
         labelled: bool = True) -> LabelledRow:
    text = str(record.get("text") or "").strip()
    label = str(record.get("category") or "").strip()
    sub = str(record.get("subcategory") or "").strip() or None
    priority = str(record.get("priority") or "").strip().lower() or None
    if not text:
        raise HistoryFileError(path, line, "empty text")
    if not labelled:
        return LabelledRow(text, "", None, None)
    if not label:
        raise HistoryFileError(path, line, "empty category")
    if priority is not None and priority not in PRIORITIES:
        raise HistoryFileError(path, line, f"priority {priority!r} is not one of {sorted(PRIORITIES)}")
    if taxonomy is None:
        return LabelledRow(text, label, sub, priority)
    if sub is None:
        # A bare label may name a subcategory (e.g. a BANKING77 intent) or a category.
        resolved = taxonomy.resolve(label)
        if resolved is None:
            raise HistoryFileError(path, line, f"{label!r} is not in taxonomy {taxonomy.name}")
        label, sub = resolved
    elif not taxonomy.is_valid(label, sub):
        raise HistoryFileError(path, line, f"{label}/{sub} is not in taxonomy {taxonomy.name}")
    return LabelledRow(text, label, sub, priority)


def read_history(path: Path, taxonomy: Taxonomy | None, *, labelled: bool = True) -> list[LabelledRow]:
    """Every row of a CSV or JSONL file; the taxonomy (if given) must know every label. Not
    `labelled`: only the text counts, and any label is ignored (an unlabelled history)."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryFileError(path, None, f"cannot read: {exc}") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise HistoryFileError(path, number, f"not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise HistoryFileError(path, number, "each line must be a JSON object")
            rows.append(_row(path, number, record, taxonomy, labelled))
        return rows
    if path.suffix.lower() != ".csv":
        raise HistoryFileError(path, None, "use a .csv or .jsonl file")
    reader = csv.DictReader(io.StringIO(content, newline=""))
    missing = ({"text", "category"} if labelled else {"text"}) - set(reader.fieldnames or [])
    if missing:
        raise HistoryFileError(path, 1, f"the header lacks {', '.join(sorted(missing))}")
    rows = []
    try:
        for record in reader:
            rows.append(_row(path, reader.line_num, record, taxonomy, labelled))
    except csv.Error as exc:
        raise HistoryFileError(path, reader.line_num, f"bad CSV: {exc}") from None
    return rows


def per_class(rows: Sequence[LabelledRow], n: int, seed: int) -> list[LabelledRow]:
    """N rows of each label (category/subcategory), drawn at random with `seed`: what a team with only
    that many labelled examples would train on. A label with fewer keeps all it has."""
    by_label: dict[tuple[str, str | None], list[LabelledRow]] = {}
    for row in rows:
        by_label.setdefault((row.category, row.subcategory), []).append(row)
    draw = random.Random(seed)
    return [row for label in sorted(by_label, key=str) for row in draw.sample(by_label[label], min(n, len(by_label[label])))]
