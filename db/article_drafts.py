"""Article drafts for KB gaps: stored once per gap, edited, decided (published or discarded) once,
with their Slack message and their Confluence page; and the validation stamp on a published article."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from db.connection import Connection


@dataclass(frozen=True)
class NewDraft:
    opportunity_id: UUID
    title: str
    summary: str | None
    body: str
    tags: list[str]
    category: str | None
    subcategory: str | None
    case_ids: list[UUID]
    drafter: str  # claude | template
    model: str | None
    prompt_version: str | None


@dataclass(frozen=True)
class DraftRow(NewDraft):
    """A stored draft: what was drafted, and what became of it."""

    draft_id: UUID
    status: str  # drafted | published | discarded
    edited_by: str | None
    slack_channel: str | None
    slack_ts: str | None
    decided_by: str | None
    decided_at: datetime | None
    article_id: UUID | None
    confluence_page_id: str | None
    confluence_url: str | None
    created_at: datetime


_COLUMNS = """draft_id, opportunity_id, title, summary, body, tags, category, subcategory, case_ids, drafter, model,
prompt_version, status, edited_by, slack_channel, slack_ts, decided_by, decided_at, article_id, confluence_page_id, confluence_url,
created_at"""


def _row(r: asyncpg.Record) -> DraftRow:
    values: dict[str, Any] = {k: (list(v) if k in ("tags", "case_ids") else v) for k, v in r.items()}
    return DraftRow(**values)


async def draft_for(conn: Connection, opportunity_id: UUID) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        "SELECT draft_id FROM article_drafts WHERE opportunity_id = $1", opportunity_id)
    return found


async def insert(conn: Connection, draft: NewDraft) -> UUID:
    """The gap's draft: this one, or the one a previous run of the job already stored."""
    draft_id: UUID | None = await conn.fetchval(
        """
        INSERT INTO article_drafts (opportunity_id, title, summary, body, tags, category, subcategory, case_ids,
                                    drafter, model, prompt_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (opportunity_id) DO NOTHING
        RETURNING draft_id
        """,
        draft.opportunity_id, draft.title, draft.summary, draft.body, draft.tags, draft.category, draft.subcategory,
        draft.case_ids, draft.drafter, draft.model, draft.prompt_version,
    )
    if draft_id is None:
        existing = await draft_for(conn, draft.opportunity_id)
        assert existing is not None  # the conflict was this row
        return existing
    return draft_id


async def load(conn: Connection, draft_id: UUID, *, lock: bool = False) -> DraftRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM article_drafts WHERE draft_id = $1" + (" FOR UPDATE" if lock else ""), draft_id)
    return _row(row) if row is not None else None


async def set_message(conn: Connection, draft_id: UUID, channel: str, ts: str) -> None:
    await conn.execute(
        "UPDATE article_drafts SET slack_channel = $2, slack_ts = $3, updated_at = now() WHERE draft_id = $1",
        draft_id, channel, ts,
    )


async def edit(conn: Connection, draft_id: UUID, *, title: str, body: str, editor: str) -> bool:
    """Replace the text of a draft still undecided; False once it was published or discarded."""
    result = await conn.execute(
        "UPDATE article_drafts SET title = $2, body = $3, edited_by = $4, edited_at = now(), updated_at = now() "
        "WHERE draft_id = $1 AND status = 'drafted'",
        draft_id, title, body, editor,
    )
    return result.endswith(" 1")


async def set_confluence_page(conn: Connection, draft_id: UUID, page_id: str, url: str | None) -> None:
    await conn.execute(
        "UPDATE article_drafts SET confluence_page_id = $2, confluence_url = $3, updated_at = now() "
        "WHERE draft_id = $1",
        draft_id, page_id, url,
    )


async def decide(conn: Connection, draft_id: UUID, *, status: str, reviewer: str,
                 article_id: UUID | None = None) -> bool:
    """Publish or discard a draft still undecided; False when someone decided first."""
    result = await conn.execute(
        "UPDATE article_drafts SET status = $2, decided_by = $3, decided_at = now(), article_id = $4, "
        "updated_at = now() WHERE draft_id = $1 AND status = 'drafted'",
        draft_id, status, reviewer, article_id,
    )
    return result.endswith(" 1")


async def stamp_validated(conn: Connection, article_id: UUID, *, reviewer: str, meta: dict[str, object]) -> None:
    """Mark a generated article as validated by a person, when, and from which draft."""
    await conn.execute(
        "UPDATE kb_articles SET auto_generated = true, human_validated = true, validated_by = $2, "
        "metadata = metadata || $3::jsonb || jsonb_build_object('validated_at', now()), updated_at = now() "
        "WHERE article_id = $1",
        article_id, reviewer, json.dumps(meta),
    )

