"""KB gaps: groups of recent cases the knowledge base answers weakly (pipelines.learning.kb_match
says how that is measured), recorded as improvement opportunities, the largest of which get an
article drafted (a KB_DRAFT job each)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from db import jobs
from db import kb_gaps as gaps_db
from db.pool import transaction
from pipelines.jobs import JobName, KbDraftJob
from pipelines.learning.case_groups import CaseGroup, group_recent_cases
from pipelines.learning.kb_match import SAMPLE_CASES, Match, best_matches, group_match, weak_below
from pipelines.learning.redaction import redact
from pipelines.ports import Embedder


class KbGap(BaseModel):
    title: str
    case_ids: list[UUID]
    best_article: str | None  # title of the best-matching article, None if the KB is empty
    best_score: float | None
    fingerprint: str



def fingerprint(group: CaseGroup, best_article: UUID | None) -> str:
    """Stable across days for the same gap: the group's triaged labels and the article it falls
    nearest to (its title when it has no labels), not its case ids, which change every day."""
    parts = [group.category or "", group.subcategory or "", str(best_article or "")]
    if not group.category and not group.subcategory:
        parts.append(" ".join(group.title.lower().split()))
    return hashlib.sha256("\x00".join(["kb_gap", *parts]).encode()).hexdigest()[:24]


@dataclass
class _Found:
    group: CaseGroup
    match: Match
    case_ids: list[UUID]


async def find_gaps(
    pool: asyncpg.Pool, embedder: Embedder | None, *, since: datetime, until: datetime, min_cases: int,
    max_score: float | None,
) -> list[tuple[KbGap, CaseGroup, Match]]:
    """The gaps among the cases created in [since, until), largest first (then weakest)."""
    threshold = weak_below(embedder, max_score)
    groups = await group_recent_cases(pool, embedder, since=since, until=until, min_size=min_cases)
    found: dict[str, _Found] = {}
    for group in groups:
        async with pool.acquire() as conn:
            cases = await gaps_db.case_texts(conn, group.case_ids[:SAMPLE_CASES])
        match = group_match(await best_matches(pool, embedder, [c.query for c in cases]))
        if match.score is not None and match.score >= threshold:
            continue
        # The title is a customer's subject or summary: it goes to Slack, the report and the email.
        group = replace(group, title=redact(group.title, [c.customer_name for c in cases]))
        key = fingerprint(group, match.article_id)
        if key in found:  # two clusters of one gap (same labels, same nearest article): one gap
            found[key].case_ids += [c for c in group.case_ids if c not in found[key].case_ids]
        else:
            found[key] = _Found(group, match, list(group.case_ids))
    gaps = [
        (KbGap(title=f.group.title, case_ids=f.case_ids, best_article=f.match.title,
               best_score=round(f.match.score, 4) if f.match.score is not None else None, fingerprint=key),
         f.group, f.match)
        for key, f in found.items()
    ]
    gaps.sort(key=lambda g: (-len(g[0].case_ids), g[0].best_score if g[0].best_score is not None else -1.0))
    return gaps


async def kb_gaps_step(
    pool: asyncpg.Pool, embedder: Embedder | None, *, until: datetime, days: int = 7, min_cases: int,
    max_score: float | None, drafts_per_day: int,
) -> list[KbGap]:
    """Find the gaps of the `days` before `until`, record each as an open kb_gap opportunity (found
    again: the same row, its cases merged), and queue a KB_DRAFT job for the largest ones, at most
    `drafts_per_day`, skipping gaps already drafted (whatever became of that draft)."""
    found = await find_gaps(pool, embedder, since=until - timedelta(days=days), until=until, min_cases=min_cases,
                            max_score=max_score)
    queued = 0
    for gap, group, match in found:
        async with transaction(pool) as conn:
            row = await gaps_db.record_gap(
                conn, fingerprint=gap.fingerprint, title=gap.title, category=group.category,
                subcategory=group.subcategory, case_ids=gap.case_ids, article_id=match.article_id,
                best_article=gap.best_article, best_score=gap.best_score,
            )
            if queued >= drafts_per_day or await gaps_db.drafted(conn, gap.fingerprint):
                continue
            await jobs.enqueue(conn, JobName.KB_DRAFT, KbDraftJob(opportunity_id=row.opportunity_id).payload(),
                               dedupe_key=f"{JobName.KB_DRAFT}:{gap.fingerprint}")
            await gaps_db.set_status(conn, row.opportunity_id, "in_progress")
            queued += 1
    return [gap for gap, _, _ in found]
