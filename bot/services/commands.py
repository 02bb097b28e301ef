"""The slash commands: `/case` lookups and `/kb` searches for the listeners in handlers.commands,
with the pipelines' rows turned into the views' dataclasses."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from db.cases import REVIEWABLE
from db.lifecycle import RESOLVABLE
from handlers.case_query import CaseQuery, QueryKind
from handlers.case_views import (
    CaseAnswer,
    CaseDetail,
    CaseLine,
    KbResult,
    KbShare,
    MyCases,
    QueueSize,
    TimelineEntry,
)
from handlers.services import CommandService
from pipelines.kb import search as kb_search
from pipelines.ports import Embedder
from pipelines.review import lookup as case_lookup

V = TypeVar("V")


def _view(cls: type[V], source: Any, **overrides: Any) -> V:
    """A view dataclass from a row whose fields have the same names (a missing one fails loudly)."""
    values = {f.name: getattr(source, f.name) for f in fields(cls) if f.name not in overrides}  # type: ignore[arg-type]
    return cls(**values, **overrides)


def case_detail(facts: case_lookup.CaseFacts) -> CaseDetail:
    return _view(CaseDetail, facts, reviewable=facts.status in REVIEWABLE, resolvable=facts.status in RESOLVABLE,
                 timeline=tuple(_view(TimelineEntry, row) for row in facts.timeline))


def case_answer(matches: case_lookup.Matches) -> CaseAnswer:
    if matches.only is not None:
        return CaseAnswer(case=case_detail(matches.only), total=1)
    return CaseAnswer(matches=tuple(_view(CaseLine, row) for row in matches.cases), total=matches.total)


def queue_size(counts: case_lookup.QueueCounts, now: datetime) -> QueueSize:
    since = counts.oldest_waiting_since
    return QueueSize(awaiting_review=counts.awaiting_review, human_owned=counts.human_owned,
                     escalated=counts.escalated, oldest_wait=now - since if since is not None else None)


class SlackCommandService(CommandService):
    def __init__(self, pool: asyncpg.Pool, embedder: Embedder | None, multilingual: Embedder | None = None) -> None:
        self._pool, self._embedder, self._multilingual = pool, embedder, multilingual

    async def find_case(self, query: CaseQuery) -> CaseAnswer:
        if query.kind is QueryKind.ID:
            return _one(await case_lookup.by_id(self._pool, UUID(query.value)))
        if query.kind is QueryKind.SHORT_ID:
            return _one(await case_lookup.by_short_id(self._pool, int(query.value)))
        if query.kind is QueryKind.EMAIL:
            return case_answer(await case_lookup.by_email(self._pool, query.value))
        if query.kind is QueryKind.WORDS:
            return case_answer(await case_lookup.by_words(self._pool, query.value))
        raise ValueError(f"not a lookup: {query.kind}")

    async def my_cases(self, user_id: str) -> MyCases:
        rows, total = await case_lookup.my_cases(self._pool, user_id)
        queue = await case_lookup.queue_counts(self._pool)
        return MyCases(cases=tuple(_view(CaseLine, row) for row in rows), total=total,
                       queue=queue_size(queue, datetime.now(UTC)))

    async def search_kb(self, query: str, k: int) -> list[KbResult]:
        hits = await kb_search.search(self._pool, self._embedder, query, k=k, origin="slack",
                                      multilingual=self._multilingual)
        return [_view(KbResult, hit) for hit in hits]

    async def share_kb(self, delivery_id: str, share: KbShare) -> list[KbResult] | None:
        articles = await case_lookup.shared_articles(self._pool, delivery_id, share.refs, share.query)
        if articles is None:
            return None
        return [_view(KbResult, article, score=None, category=None) for article in articles]


def _one(facts: case_lookup.CaseFacts | None) -> CaseAnswer:
    return CaseAnswer(case=case_detail(facts) if facts else None, total=1 if facts else 0)
