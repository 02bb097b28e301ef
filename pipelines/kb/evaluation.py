"""Knowledge-base retrieval quality on a set of questions: the files `cx eval kb` reads and the
figures it reports. Pure: no database, no embeddings."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict

from pipelines.kb.documents import Article

# Ranks are read from this many article-level results; MRR counts nothing below it.
RESULTS_K = 10
RECALL_AT = (1, 3, 5)


class QuestionFileError(ValueError):
    """A question file that cannot be used; the message names the file and, where known, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None, item: int | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}{f' (item {item})' if item else ''}: {message}")


class Question(BaseModel):
    """One question and the articles that answer it, as names. Extra keys (`kind`, or what a
    future ranking mode reads, such as a triaged subcategory) are kept."""

    model_config = ConfigDict(extra="allow")

    q: str
    expect: list[str]
    kind: str | None = None
    line: int = 0  # where the question is in its file, for messages


class ResolvedQuestion(BaseModel):
    question: Question
    expect: frozenset[str]  # source ids of the articles that answer it


def read_questions(path: Path) -> list[Question]:
    """The questions of a YAML list or a JSONL file, each `{q, expect}` (or the older
    `{question, article}`). Raises QuestionFileError naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(path, f"cannot read it ({exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        items = _jsonl_items(path, text)
    elif suffix in (".yaml", ".yml"):
        items = _yaml_items(path, text)
    else:
        raise QuestionFileError(path, f"unsupported file type {suffix!r} (use .yaml, .yml or .jsonl)")
    if not items:
        raise QuestionFileError(path, "holds no questions")
    return [_question(path, raw, line, number) for number, (line, raw) in enumerate(items, start=1)]


def _jsonl_items(path: Path, text: str) -> list[tuple[int, object]]:
    items: list[tuple[int, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise QuestionFileError(path, f"not valid JSON ({exc.msg})", line=number) from None
    return items


def _yaml_items(path: Path, text: str) -> list[tuple[int, object]]:
    try:
        # The node tree gives each item its line; the loaded data gives its values.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise QuestionFileError(path, f"not valid YAML ({getattr(exc, 'problem', None) or exc})",
                                line=mark.line + 1 if mark else None) from None
    if data is None:
        return []
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        raise QuestionFileError(path, "must be a YAML list of {q, expect} items", line=1)
    return [(node.start_mark.line + 1, raw) for node, raw in zip(root.value, data)]


def _question(path: Path, raw: object, line: int, item: int) -> Question:
    if not isinstance(raw, dict):
        raise QuestionFileError(path, "each question must be a mapping with q and expect", line, item)
    raw = dict(raw)
    if "q" not in raw and "question" in raw:
        raw["q"] = raw.pop("question")
    if "expect" not in raw and "article" in raw:
        raw["expect"] = raw.pop("article")
    question, expect = raw.get("q"), raw.get("expect")
    if not isinstance(question, str) or not question.strip():
        raise QuestionFileError(path, "q is missing or not a non-empty string", line, item)
    if isinstance(expect, str):
        expect = [expect]
    if not isinstance(expect, list) or not expect or not all(isinstance(e, str | int) for e in expect):
        raise QuestionFileError(path, "expect is missing or not a non-empty list of article names", line, item)
    kind = raw.pop("kind", None)
    extra = {k: v for k, v in raw.items() if k not in ("q", "expect", "line")}
    return Question(q=question, expect=[str(e) for e in expect], kind=None if kind is None else str(kind),
                    line=line, **extra)


def article_names(articles: Sequence[Article]) -> dict[str, set[str]]:
    """Every name an article goes by, lower-cased, to the source ids carrying it: its id (the file's
    path under the KB folder, or a JSONL article's id), its file stem, its URL's last segment and its title."""
    names: dict[str, set[str]] = {}
    for article in articles:
        source_id = article.source_id
        own = {source_id, Path(source_id.split("#", 1)[0]).stem, article.meta.title}
        if "#" in source_id:
            own.add(source_id.split("#", 1)[1])
        if article.meta.url:
            own.add(article.meta.url.rstrip("/").rsplit("/", 1)[-1])
        for name in own:
            names.setdefault(name.strip().lower(), set()).add(source_id)
    return names


def resolve(path: Path, questions: Sequence[Question], articles: Sequence[Article]) -> list[ResolvedQuestion]:
    """Each question with the source ids its `expect` names; a name that is no article, or more
    than one, is a QuestionFileError."""
    names = article_names(articles)
    resolved = []
    for item, question in enumerate(questions, start=1):
        ids: set[str] = set()
        for name in question.expect:
            found = names.get(name.strip().lower(), set())
            if not found:
                raise QuestionFileError(path, f"expect names no article in the KB: {name!r}", question.line, item)
            if len(found) > 1:
                raise QuestionFileError(path, f"expect {name!r} names {len(found)} articles "
                                              f"({', '.join(sorted(found))}); use one's id", question.line, item)
            ids |= found
        resolved.append(ResolvedQuestion(question=question, expect=frozenset(ids)))
    return resolved


def rank_of(expect: frozenset[str], results: Sequence[str]) -> int | None:
    """1-based position of the first expected article among the results, None if absent."""
    return next((i for i, result in enumerate(results[:RESULTS_K], start=1) if result in expect), None)


class ModeFigures(BaseModel):
    n: int
    recall_at_1: float
    recall_at_3: float
    recall_at_5: float
    mrr: float  # mean of 1/rank over the top RESULTS_K, 0 when the answer is not there
    search_ms_p50: float
    search_ms_p95: float
    embed_ms_p50: float | None  # None when the mode embeds nothing
    embed_ms_p95: float | None


def _percentile(values: Sequence[float], q: int) -> float:
    return round(float(np.percentile(values, q)), 2)


def figures(ranks: Sequence[int | None], search_ms: Sequence[float], embed_ms: Sequence[float] | None) -> ModeFigures:
    if not ranks:
        raise ValueError("no questions")
    n = len(ranks)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in RECALL_AT}
    mrr = sum(1 / r for r in ranks if r is not None and r <= RESULTS_K) / n
    return ModeFigures(
        n=n, recall_at_1=round(recall[1], 4), recall_at_3=round(recall[3], 4), recall_at_5=round(recall[5], 4),
        mrr=round(mrr, 4), search_ms_p50=_percentile(search_ms, 50), search_ms_p95=_percentile(search_ms, 95),
        embed_ms_p50=_percentile(embed_ms, 50) if embed_ms else None,
        embed_ms_p95=_percentile(embed_ms, 95) if embed_ms else None,
    )


class Answer(BaseModel):
    """What one mode returned for one question."""

    rank: int | None
    first: str | None  # title of the first result
    search_ms: float
    embed_ms: float | None


class Miss(BaseModel):
    q: str
    kind: str | None
    expected: list[str]  # titles
    rank: int | None  # beyond 3, or None when not in the top RESULTS_K
    first: str | None


class SplitReport(BaseModel):
    file: str
    n: int
    modes: dict[str, ModeFigures]
    kinds: dict[str, dict[str, ModeFigures]]  # kind -> mode -> figures, when questions have a kind
    misses_mode: str | None  # the first mode measured, whose misses at 3 are listed
    misses: list[Miss]


def split_report(
    file: str, questions: Sequence[ResolvedQuestion], answers: Mapping[str, Sequence[Answer]],
    titles: Mapping[str, str],
) -> SplitReport:
    """Figures per mode (answers[mode][i] answers questions[i]), per kind, and the first mode's misses at 3."""

    def by_mode(indices: Sequence[int]) -> dict[str, ModeFigures]:
        out = {}
        for mode, given in answers.items():
            picked = [given[i] for i in indices]
            embed = [a.embed_ms for a in picked if a.embed_ms is not None]
            out[mode] = figures([a.rank for a in picked], [a.search_ms for a in picked], embed or None)
        return out

    kinds = sorted({q.question.kind for q in questions if q.question.kind is not None})
    misses = []
    misses_mode = next(iter(answers), None)
    if misses_mode is not None:
        for q, answer in zip(questions, answers[misses_mode]):
            if answer.rank is None or answer.rank > 3:
                misses.append(Miss(q=q.question.q, kind=q.question.kind, rank=answer.rank, first=answer.first,
                                   expected=sorted(titles.get(e, e) for e in q.expect)))
    return SplitReport(
        file=file, n=len(questions), modes=by_mode(range(len(questions))),
        kinds={kind: by_mode([i for i, q in enumerate(questions) if q.question.kind == kind]) for kind in kinds},
        misses_mode=misses_mode, misses=misses,
    )
