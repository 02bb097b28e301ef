"""Past cases imported as cases (`cx cases import FILE.jsonl --as-cases`): a Zendesk export or the
reference system's `cases` table, one JSON object a line. The whole file is checked before anything
is stored; each line then becomes a case of channel `import` with its own timestamps, labels and
status, in bulk. No AI runs, no job is queued and no reply is sent: history gives detection its
baselines (volume, error codes, case vectors for clusters) and the local triager labelled examples."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from uuid import UUID

import asyncpg
import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from db import case_import as case_import_db
from db import embedding_space
from db.case_import import CaseRow
from db.cases import CaseStatus
from db.connection import Connection
from db.pool import transaction
from pipelines.embedding_backfill import backfill
from pipelines.models import checked_email
from pipelines.ports import Embedder, case_embedding_text
from pipelines.taxonomy import Priority, Taxonomy
from pipelines.triage.text_signals import error_codes

BATCH = 5_000
EMBED_BATCH = 256

ResolutionType = Literal["self_service", "collaborative", "human", "escalated"]

_OPTIONAL = ("customer_name", "subject", "channel", "category", "subcategory", "priority", "status",
             "first_response_at", "resolved_at", "resolution_type", "csat")


class CaseHistoryError(ValueError):
    def __init__(self, path: Path, line: int | None, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class PastCase(BaseModel):
    """One line of the file. Unknown keys (an export's other columns) are ignored; empty strings
    count as absent; timestamps are ISO 8601 and, without a time zone, taken as UTC."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    external_id: str = Field(min_length=1, max_length=200)
    received_at: datetime
    customer_email: str
    customer_name: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=1_000)
    description: str = Field(min_length=1, max_length=100_000)
    channel: str | None = Field(default=None, max_length=50)  # where it came in originally
    category: str | None = Field(default=None, max_length=100)
    subcategory: str | None = Field(default=None, max_length=100)
    priority: Priority | None = None
    status: CaseStatus | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution_type: ResolutionType | None = None
    csat: int | None = Field(default=None, ge=1, le=5)

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("priority", "status", "resolution_type", "channel", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("received_at", "first_response_at", "resolved_at")
    @classmethod
    def _utc_if_naive(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("customer_email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return checked_email(value).lower()

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> PastCase:
        context = info.context or {}
        now: datetime = context.get("now") or datetime.now(UTC)
        for name in ("received_at", "first_response_at", "resolved_at"):
            value = getattr(self, name)
            if value is not None and value > now:
                raise ValueError(f"{name} {value.isoformat()} is in the future")
        for name in ("first_response_at", "resolved_at"):
            value = getattr(self, name)
            if value is not None and value < self.received_at:
                raise ValueError(f"{name} {value.isoformat()} is before received_at {self.received_at.isoformat()}")
        taxonomy: Taxonomy | None = context.get("taxonomy")
        if taxonomy is not None:
            known: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = context.get("labels", {})
            given = (self.category, self.subcategory)
            if given not in known:
                known[given] = _labels(taxonomy, *given)
            self.category, self.subcategory = known[given]
        return self

    @property
    def text(self) -> str:
        """What triage reads: the subject, then the message."""
        return f"{self.subject}\n{self.description}" if self.subject else self.description

    def final_status(self) -> CaseStatus:
        # History is not live work: a past case that names no status is over, resolved when it says so.
        if self.status is not None:
            return self.status
        return CaseStatus.RESOLVED if self.resolved_at is not None else CaseStatus.CLOSED


def _labels(taxonomy: Taxonomy, category: str | None, subcategory: str | None) -> tuple[str | None, str | None]:
    """The labels as the taxonomy names them; a bare label may be a subcategory (as in labelled
    history), and a subcategory alone brings its category."""
    if category is None and subcategory is None:
        return None, None
    if category is not None and subcategory is not None:
        if not taxonomy.is_valid(category, subcategory):
            raise ValueError(f"{category}/{subcategory} is not in taxonomy {taxonomy.name}")
        return category, subcategory
    label = category or subcategory
    assert label is not None
    resolved = taxonomy.resolve(label)
    if resolved is None or (category is None and resolved[1] is None):
        raise ValueError(f"{'category' if category else 'subcategory'} {label!r} is not in taxonomy {taxonomy.name}")
    return resolved


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "missing":
        return f"{where} is missing"
    return f"{where}: {message}" if where else message


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            yield from enumerate(handle, 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseHistoryError(path, None, f"cannot read: {exc}") from None


def read_past_cases(path: Path, taxonomy: Taxonomy | None, *, now: datetime | None = None) -> list[PastCase]:
    """Every line of a JSONL file as a checked past case; the first bad line raises, naming itself."""
    if path.suffix.lower() != ".jsonl":
        raise CaseHistoryError(path, None, "past cases come as a .jsonl file, one JSON object a line")
    context: dict[str, object] = {"taxonomy": taxonomy, "now": now or datetime.now(UTC), "labels": {}}
    cases: list[PastCase] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CaseHistoryError(path, number, f"not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise CaseHistoryError(path, number, "each line must be a JSON object")
        try:
            case = PastCase.model_validate(record, context=context)
        except ValidationError as exc:
            raise CaseHistoryError(path, number, _reason(exc)) from None
        seen = first_line.setdefault(case.external_id, number)
        if seen != number:
            raise CaseHistoryError(path, number, f"external_id {case.external_id!r} is already on line {seen}")
        cases.append(case)
    if not cases:
        raise CaseHistoryError(path, None, "no cases in the file")
    return cases


def _row(case: PastCase) -> CaseRow:
    stamps = [t for t in (case.received_at, case.first_response_at, case.resolved_at) if t is not None]
    return CaseRow(
        external_id=case.external_id, received_at=case.received_at,
        updated_at=max(stamps),  # the last thing known to have happened to it
        customer_email=case.customer_email, customer_name=case.customer_name, subject=case.subject,
        description=case.description, source_channel=case.channel, category=case.category,
        subcategory=case.subcategory, priority=case.priority, status=case.final_status().value,
        first_response_at=case.first_response_at, resolved_at=case.resolved_at,
        resolution_type=case.resolution_type, csat=case.csat,
        error_codes=error_codes(case.text), example_text=case.text,
    )


class Progress(Protocol):
    def stage(self, name: str, total: int) -> None:
        """A new stage begins with `total` units of work."""
        ...

    def advance(self, done: int) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


@dataclass(frozen=True)
class ImportReport:
    lines: int
    created: int
    existing: int
    examples_added: int
    embedded: int
    unembedded: int  # cases of the file still without a vector (no embedder, or nothing to embed with)
    embedding_model: str | None


async def store_cases(
    pool: asyncpg.Pool, cases: Sequence[PastCase], *, batch: int = BATCH, progress: Progress | None = None
) -> case_import_db.BatchResult:
    """Store the cases oldest first, one transaction per batch; returns the totals and the case
    id of every line (new or already imported)."""
    progress = progress or _Silent()
    progress.stage("storing cases", len(cases))
    ordered = sorted(cases, key=lambda c: c.received_at)
    created = existing = examples = 0
    case_ids: list[UUID] = []
    for start in range(0, len(ordered), batch):
        rows = [_row(c) for c in ordered[start:start + batch]]
        async with transaction(pool) as conn:
            result = await case_import_db.store_batch(conn, rows)
        created += result.created
        existing += result.existing
        examples += result.examples_added
        case_ids += result.case_ids
        progress.advance(len(rows))
    return case_import_db.BatchResult(created, existing, examples, case_ids)


async def embed_cases(
    pool: asyncpg.Pool, embedder: Embedder, case_ids: Sequence[UUID], *, batch: int = EMBED_BATCH,
    progress: Progress | None = None,
) -> int:
    """Give each of `case_ids` that has no vector one, `batch` texts a call; returns how many.
    Each call is recorded in llm_usage as step `case_embed`."""
    progress = progress or _Silent()
    async with pool.acquire() as conn:
        todo = await case_import_db.count_unembedded(conn, case_ids)
    progress.stage(f"embedding ({embedder.model})", todo)
    if not todo:
        return 0
    position = 0

    async def pending(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
        # Walks the file's cases a slice at a time; slices already embedded (an earlier,
        # interrupted run) are passed over.
        nonlocal position
        while position < len(case_ids):
            window = case_ids[position:position + limit]
            position += limit
            found = await case_import_db.unembedded(conn, window)
            if found:
                return [(case_id, case_embedding_text(subject, description)) for case_id, subject, description in found]
        return []

    async def store(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
        await case_import_db.set_embeddings(conn, ids, vectors, embedder.model)

    return await backfill(pool, embedder, pending, store, batch=batch, step="case_embed", progress=progress.advance)


async def import_cases(
    pool: asyncpg.Pool, cases: Sequence[PastCase], embedder: Embedder | None, *, batch: int = BATCH,
    embed_batch: int = EMBED_BATCH, progress: Progress | None = None,
) -> ImportReport:
    """Store checked past cases as cases and, with an embedder, embed those without a vector."""
    if embedder is not None:
        # Another model than the recorded one is refused before anything is stored.
        async with pool.acquire() as conn:
            await embedding_space.check(conn, embedder.provider, embedder.model)
    totals = await store_cases(pool, cases, batch=batch, progress=progress)
    case_ids = totals.case_ids
    embedded = 0
    if embedder is not None:
        embedded = await embed_cases(pool, embedder, case_ids, batch=embed_batch, progress=progress)
    async with pool.acquire() as conn:
        unembedded = await case_import_db.count_unembedded(conn, case_ids)
    return ImportReport(
        lines=len(cases), created=totals.created, existing=totals.existing, examples_added=totals.examples_added,
        embedded=embedded, unembedded=unembedded, embedding_model=embedder.model if embedder else None,
    )


def unlabelled_history(texts: Sequence[str], *, now: datetime | None = None) -> list[PastCase]:
    """Texts as closed past cases without labels, a second apart up to `now`, all from one
    customer: an evaluation's unlabelled history (`cx eval triage --unlabelled`)."""
    now = now or datetime.now(UTC)
    return [
        PastCase(external_id=f"unlabelled-{i}", received_at=now - timedelta(seconds=len(texts) - i),
                 customer_email="history@example.com", description=text)
        for i, text in enumerate(texts)
    ]
