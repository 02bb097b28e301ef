"""`cx kb import|search|sync|reembed` and `cx eval kb`: the knowledge base from the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from uuid import UUID

import asyncpg
import numpy as np
import typer
from rich.progress import Progress
from rich.table import Table

from bot.ai import build_multilingual_embedder
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
from bot.settings import PROJECT_ROOT
from db import kb as kb_db
from db.connection import Connection
from pipelines.kb.documents import Article, KbFileError, collect, read_file
from pipelines.kb.evaluation import (
    RESULTS_K,
    Answer,
    Question,
    QuestionFileError,
    ResolvedQuestion,
    SplitReport,
    rank_of,
    read_questions,
    resolve,
    split_report,
)
from pipelines.ports import Embedder

kb_app = typer.Typer(help="The knowledge base.", no_args_is_help=True)
sync_app = typer.Typer(help="Sync the knowledge base from a wiki.", no_args_is_help=True)
kb_app.add_typer(sync_app, name="sync")


@kb_app.command("import")
@command
async def kb_import(
    paths: Annotated[list[Path], typer.Argument(help="Markdown, HTML, text or JSONL files, or folders of them")],
    embeddings: EmbeddingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Import articles; unchanged ones are skipped, changed ones re-embed only their changed chunks."""
    from pipelines.kb.ingest import embed_pending, embed_pending_multilingual, store_articles

    settings = settings_from_env(quiet=as_json)
    try:
        articles = [a for path, root in collect(paths) for a in read_file(path, root)]
    except KbFileError as exc:
        raise UsageError(str(exc)) from None
    embedder = build_embedder_or_exit(settings, embeddings)
    multilingual = build_multilingual_embedder(settings)
    async with open_pool(settings) as pool:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("storing", total=len(articles))
            changes = await store_articles(pool, articles, lambda n: progress.advance(task, n))
            embedded = multilingual_embedded = 0
            if embedder is not None:
                async with pool.acquire() as conn:
                    _, _, pending = await kb_db.counts(conn)
                task = progress.add_task(f"embedding ({embedder.model})", total=pending)
                embedded = await embed_pending(pool, embedder, lambda n: progress.advance(task, n))
            if multilingual is not None:
                task = progress.add_task(f"embedding ({multilingual.model})", total=None)
                multilingual_embedded = await embed_pending_multilingual(
                    pool, multilingual, lambda n: progress.advance(task, n))
        async with pool.acquire() as conn:
            articles_total, chunks_total, unembedded = await kb_db.counts(conn)
    summary = {"created": changes["created"], "updated": changes["updated"], "unchanged": changes["unchanged"],
               "chunks_embedded": embedded, "chunks_embedded_multilingual": multilingual_embedded,
               "articles": articles_total, "chunks": chunks_total}
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("created", "updated", "unchanged", "chunks embedded", "multilingual vectors", "articles in KB",
                  "chunks in KB")
    table.add_row(*(str(v) for v in summary.values()))
    out.print(table)
    if embedder is None:
        out.print(f"No embeddings (EMBEDDINGS=none): search uses full text only; {unembedded} chunks have no vector.")


@kb_app.command("search")
@command
async def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many articles")] = 5,
    category: Annotated[str | None, typer.Option(help="Only this category")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only articles with this tag (repeatable)")] = None,
    embeddings: EmbeddingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Hybrid search: vectors and full text fused by reciprocal rank."""
    from pipelines.kb.search import search

    if not query.strip():
        raise UsageError("the query is empty")
    settings = settings_from_env(quiet=as_json)
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        hits = await search(pool, embedder, query, k, category=category, tags=tag, origin="cli",
                            multilingual=build_multilingual_embedder(settings))
    if as_json:
        print(json.dumps([
            {"article_id": str(h.article_id), "title": h.title, "score": round(h.score, 5), "snippet": h.snippet,
             "url": h.url, "category": h.category, "subcategory": h.subcategory, "section": h.heading,
             "vector_rank": h.vector_rank, "text_rank": h.text_rank}
            for h in hits
        ]))
        return
    if not hits:
        out.print("No article matches.")
        return
    table = Table("#", "score", "article", "snippet", "url")
    for i, h in enumerate(hits, 1):
        table.add_row(str(i), f"{h.score:.4f}", h.title, h.snippet, h.url or "")
    out.print(table)


@kb_app.command("reembed")
@command
async def kb_reembed(embeddings: EmbeddingsOption = None) -> None:
    """Drop every stored vector and embed the knowledge base again with the configured model."""
    from pipelines.kb.ingest import reembed

    settings = settings_from_env()
    embedder = build_embedder_or_exit(settings, embeddings)
    if embedder is None:
        raise UsageError("EMBEDDINGS is none: there is nothing to embed with")
    async with open_pool(settings) as pool:
        done = await reembed(pool, embedder, multilingual=build_multilingual_embedder(settings))
    out.print(f"Re-embedded {done} chunks with {embedder.provider} {embedder.model}. "
              "Run `cx triage train` to re-embed the labelled history too.")


@sync_app.command("confluence")
@command
async def kb_sync_confluence(
    space: Annotated[str | None, typer.Option("--space", help="Space key (default: CONFLUENCE_SPACE_KEY)")] = None,
    embeddings: EmbeddingsOption = None,
) -> None:
    """Fetch new and changed pages of a Confluence space; pages removed there are archived here."""
    from pipelines.adapters.confluence import ConfluenceClient, ConfluenceError
    from pipelines.kb.confluence_sync import sync_space
    from pipelines.kb.ingest import embed_pending, embed_pending_multilingual

    settings = settings_from_env()
    token = settings.secret("confluence_api_token")
    if not (settings.confluence_url and settings.confluence_email and token):
        raise UsageError("set CONFLUENCE_URL, CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN to sync from Confluence")
    embedder = build_embedder_or_exit(settings, embeddings)
    space_key = space or settings.confluence_space_key
    async with open_pool(settings) as pool, ConfluenceClient(settings.confluence_url, settings.confluence_email,
                                                             token) as client:
        try:
            report = await sync_space(pool, client, space_key)
        except ConfluenceError as exc:
            raise UsageError(f"Confluence: {exc}") from None
        embedded = await embed_pending(pool, embedder) if embedder is not None else 0
        multilingual = build_multilingual_embedder(settings)
        if multilingual is not None:
            await embed_pending_multilingual(pool, multilingual)
    out.print(f"Space {space_key}: {report.pages} pages; created {report.changes['created']}, "
              f"updated {report.changes['updated']}, unchanged {report.changes['unchanged']}, "
              f"archived {report.archived}; {embedded} chunks embedded.")


# ---- cx eval kb ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchMode:
    """One way of ranking the knowledge base that `cx eval kb` measures. A new ranking option (a
    reranker, the triaged subcategory read from the question's extra keys) is one more entry."""

    name: str
    needs_vector: bool
    search: Callable[[Connection, Question, QueryVectors, int], Awaitable[list[kb_db.Hit]]]
    uses_multilingual: bool = False  # reads QueryVectors.multilingual (its embedding time counts)
    needs_multilingual: bool = False  # measured only when there is a multilingual embedder


@dataclass(frozen=True)
class QueryVectors:
    """A question's vectors: the deployment's embedder's, and the multilingual one, which (as in
    pipelines.kb.search) only a question not in English gets."""

    vector: np.ndarray | None
    multilingual: np.ndarray | None


async def _hybrid(conn: Connection, question: Question, vectors: QueryVectors, k: int) -> list[kb_db.Hit]:
    return await kb_db.hybrid_search(conn, question.q, vectors.vector, k, multilingual=vectors.multilingual)


async def _hybrid_en(conn: Connection, question: Question, vectors: QueryVectors, k: int) -> list[kb_db.Hit]:
    return await kb_db.hybrid_search(conn, question.q, vectors.vector, k)


async def _vector(conn: Connection, question: Question, vectors: QueryVectors, k: int) -> list[kb_db.Hit]:
    assert vectors.vector is not None  # needs_vector
    return await kb_db.vector_search(conn, vectors.vector, k)


async def _text(conn: Connection, question: Question, vectors: QueryVectors, k: int) -> list[kb_db.Hit]:
    return await kb_db.hybrid_search(conn, question.q, None, k)


# The first mode is the product's search: its misses are listed. "hybrid-en" is the product's
# search without the multilingual ranking, to show what that ranking adds; it is measured only
# when there is a multilingual embedder.
SEARCH_MODES = (
    SearchMode("hybrid", True, _hybrid, uses_multilingual=True),
    SearchMode("hybrid-en", True, _hybrid_en, needs_multilingual=True),
    SearchMode("vector", True, _vector),
    SearchMode("text", False, _text),
)
MISSES_SHOWN = 10


@command
async def eval_kb(
    questions: Annotated[list[Path], typer.Option(
        "--questions", help="YAML or JSONL of {q, expect: [article names]}; repeat for more splits")],
    kb: Annotated[Path, typer.Option("--kb", help="The knowledge base: a folder or files of articles")] = (
        PROJECT_ROOT / "samples" / "kb"),
    embeddings: EmbeddingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Import the KB into a scratch database and measure how well each search mode ranks the
    article that answers each question: recall@1/3/5, MRR@10 and latency, per file."""
    settings = settings_from_env(quiet=as_json)
    try:
        articles = [a for path, root in collect([kb]) for a in read_file(path, root)]
    except KbFileError as exc:
        raise UsageError(f"--kb {exc}") from None
    if not articles:
        raise UsageError(f"--kb {kb}: holds no articles")
    try:
        splits = [(path, resolve(path, read_questions(path), articles)) for path in questions]
    except QuestionFileError as exc:
        raise UsageError(str(exc)) from None
    embedder = build_embedder_or_exit(settings, embeddings)
    multilingual = build_multilingual_embedder(settings) if embedder is not None else None
    modes = [m for m in SEARCH_MODES if (embedder is not None or not m.needs_vector)
             and (multilingual is not None or not m.needs_multilingual)]
    titles = {a.source_id: a.meta.title for a in articles}
    reports = []
    async with scratch_pool(settings) as pool:
        await _import(pool, articles, embedder, multilingual)
        async with pool.acquire() as conn:
            names = await kb_db.source_ids(conn)
            articles_total, chunks_total, _ = await kb_db.counts(conn)
            await _warm_up(conn, embedder, multilingual, modes)
            for path, resolved in splits:
                answers = await _ask(conn, embedder, multilingual, modes, resolved, names)
                reports.append(split_report(str(path), resolved, answers, titles))
    note = None if embedder is not None else "No embeddings (EMBEDDINGS=none): full text only."
    if as_json:
        print(json.dumps({
            "kb": str(kb), "articles": articles_total, "chunks": chunks_total,
            "embeddings": embedder.model if embedder else None,
            "multilingual": multilingual.model if multilingual else None, "k": RESULTS_K,
            "modes": [m.name for m in modes],
            "note": note, "splits": [r.model_dump(mode="json") for r in reports],
        }))
        return
    _print_reports(reports, embedder, articles_total, chunks_total, note)


async def _import(
    pool: asyncpg.Pool, articles: Sequence[Article], embedder: Embedder | None, multilingual: Embedder | None
) -> None:
    from pipelines.kb.ingest import embed_pending, embed_pending_multilingual, store_articles

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("importing the KB", total=len(articles))
        await store_articles(pool, articles, lambda n: progress.advance(task, n))
        if embedder is not None:
            async with pool.acquire() as conn:
                _, _, pending = await kb_db.counts(conn)
            task = progress.add_task(f"embedding ({embedder.model})", total=pending)
            await embed_pending(pool, embedder, lambda n: progress.advance(task, n))
        if multilingual is not None:
            task = progress.add_task(f"embedding ({multilingual.model})", total=None)
            await embed_pending_multilingual(pool, multilingual, lambda n: progress.advance(task, n))


async def _warm_up(
    conn: Connection, embedder: Embedder | None, multilingual: Embedder | None, modes: Sequence[SearchMode]
) -> None:
    """One untimed question first: a model's first call loads it, a statement's first run plans it."""
    question = Question(q="warm up", expect=["-"])
    vector = (await embedder.embed([question.q]))[0][0] if embedder is not None else None
    other = (await multilingual.embed([question.q]))[0][0] if multilingual is not None else None
    for mode in modes:
        await mode.search(conn, question, QueryVectors(vector, other), RESULTS_K)


async def _ask(
    conn: Connection, embedder: Embedder | None, multilingual: Embedder | None, modes: Sequence[SearchMode],
    questions: Sequence[ResolvedQuestion], names: dict[UUID, str],
) -> dict[str, list[Answer]]:
    from pipelines.kb.search import wants_multilingual

    answers: dict[str, list[Answer]] = {m.name: [] for m in modes}
    for item in questions:
        vector, embed_ms = None, None
        if embedder is not None:
            started = time.perf_counter()
            vectors, _ = await embedder.embed([item.question.q])
            embed_ms = (time.perf_counter() - started) * 1000
            vector = vectors[0]
        other, other_ms = None, 0.0
        if multilingual is not None and wants_multilingual(item.question.q):
            started = time.perf_counter()
            vectors, _ = await multilingual.embed([item.question.q])
            other_ms = (time.perf_counter() - started) * 1000
            other = vectors[0]
        for mode in modes:
            started = time.perf_counter()
            hits = await mode.search(conn, item.question, QueryVectors(vector, other), RESULTS_K)
            search_ms = (time.perf_counter() - started) * 1000
            # The product's search embeds a non-English question twice: both count.
            spent = embed_ms + other_ms if embed_ms is not None and mode.uses_multilingual else embed_ms
            answers[mode.name].append(Answer(
                rank=rank_of(item.expect, [names.get(h.article_id, "") for h in hits]),
                first=hits[0].title if hits else None, search_ms=search_ms,
                embed_ms=spent if mode.needs_vector else None,
            ))
    return answers


def _print_reports(reports: Sequence[SplitReport], embedder: Embedder | None, articles: int, chunks: int,
                   note: str | None) -> None:
    out.print(f"{articles} articles, {chunks} chunks; embeddings: {embedder.model if embedder else 'none'}; "
              f"ranks among the top {RESULTS_K} articles.")
    if note:
        out.print(note)
    for report in reports:
        table = Table("mode", "n", "recall@1", "recall@3", "recall@5", "MRR", "search ms p50", "search ms p95",
                      "embed ms p50", "embed ms p95", title=report.file)
        rows = [(name, figures) for name, figures in report.modes.items()]
        rows += [(f"{name} · {kind}", figures) for kind, by_mode in report.kinds.items()
                 for name, figures in by_mode.items()]
        for name, f in rows:
            table.add_row(name, str(f.n), f"{f.recall_at_1:.3f}", f"{f.recall_at_3:.3f}", f"{f.recall_at_5:.3f}",
                          f"{f.mrr:.3f}", f"{f.search_ms_p50:.1f}", f"{f.search_ms_p95:.1f}",
                          "-" if f.embed_ms_p50 is None else f"{f.embed_ms_p50:.1f}",
                          "-" if f.embed_ms_p95 is None else f"{f.embed_ms_p95:.1f}")
        out.print(table)
        if report.misses:
            misses = Table("question", "expected", "rank", "first result",
                           title=f"Missed at 3 by {report.misses_mode}: {len(report.misses)} "
                                 f"(first {MISSES_SHOWN} shown; all in --json)")
            for miss in report.misses[:MISSES_SHOWN]:
                misses.add_row(miss.q, ", ".join(miss.expected), "-" if miss.rank is None else str(miss.rank),
                               miss.first or "-")
            out.print(misses)
