"""`cx kb import|search|sync|reembed`: the knowledge base from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from bot.cli.common import EmbeddingsOption, UsageError, build_embedder_or_exit, command, err, out, settings_from_env
from bot.runtime.database import open_pool
from db import kb as kb_db
from pipelines.kb.documents import KbFileError, collect, read_file

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
    from pipelines.kb.ingest import embed_pending, store_articles

    settings = settings_from_env(quiet=as_json)
    try:
        articles = [a for path, root in collect(paths) for a in read_file(path, root)]
    except KbFileError as exc:
        raise UsageError(str(exc)) from None
    embedder = build_embedder_or_exit(settings, embeddings)
    async with open_pool(settings) as pool:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("storing", total=len(articles))
            changes = await store_articles(pool, articles, lambda n: progress.advance(task, n))
            embedded = 0
            if embedder is not None:
                async with pool.acquire() as conn:
                    _, _, pending = await kb_db.counts(conn)
                task = progress.add_task(f"embedding ({embedder.model})", total=pending)
                embedded = await embed_pending(pool, embedder, lambda n: progress.advance(task, n))
        async with pool.acquire() as conn:
            articles_total, chunks_total, unembedded = await kb_db.counts(conn)
    summary = {"created": changes["created"], "updated": changes["updated"], "unchanged": changes["unchanged"],
               "chunks_embedded": embedded, "articles": articles_total, "chunks": chunks_total}
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("created", "updated", "unchanged", "chunks embedded", "articles in KB", "chunks in KB")
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
        hits = await search(pool, embedder, query, k, category=category, tags=tag, origin="cli")
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
        done = await reembed(pool, embedder)
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
    from pipelines.kb.ingest import embed_pending

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
    out.print(f"Space {space_key}: {report.pages} pages; created {report.changes['created']}, "
              f"updated {report.changes['updated']}, unchanged {report.changes['unchanged']}, "
              f"archived {report.archived}; {embedded} chunks embedded.")
