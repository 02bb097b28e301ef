"""The local triager: train on the labelled history in the database, classify offline.

Training stores the model in triage_models; every triager instance (in any process) loads the
active one and, before each case, pulls examples added since, so a reviewer's correction takes
effect at once through the kNN part."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
import numpy as np
import structlog

from db import examples as examples_db
from db import triage_models
from db.connection import Connection
from db.pool import transaction
from pipelines import model_thread
from pipelines.embedding_backfill import backfill
from pipelines.models import Severity, TriageResult
from pipelines.ports import (
    Embedder,
    LabelledExample,
    LLMUsage,
    SimilarExamples,
    Triaged,
    TriageInput,
    TriageUnavailable,
)
from pipelines.taxonomy import Taxonomy
from pipelines.triage import text_signals
from pipelines.triage.local.finetune import torch_available
from pipelines.triage.local.model import LocalModel, train

log = structlog.get_logger(__name__)


# The temperature 5-fold cross-validation on BANKING77 found for the full recipe (with the
# fine-tuned encoder); fine-tuning once per fold at every training would cost minutes.
TUNED_TEMPERATURE = 4.31


class NoLocalModel(TriageUnavailable):
    """There is no usable trained model: import labelled history (`cx cases import`), then train."""


def label_of(category: str, subcategory: str | None) -> str:
    return subcategory or category


@dataclass(frozen=True)
class Classified:
    labels: list[str]
    confidence: np.ndarray
    usage: list[LLMUsage]  # the embedding calls it took, for llm_usage


@dataclass(frozen=True)
class TrainReport:
    examples: int
    labels: int
    embedded_now: int
    seconds: float
    kind: str


async def embed_missing(pool: asyncpg.Pool, embedder: Embedder, batch: int = 2000) -> int:
    """Give every labelled example an embedding; returns how many were embedded now."""
    return await backfill(pool, embedder, examples_db.missing_embeddings, examples_db.set_embeddings, batch=batch,
                          step="triage_train")


@dataclass(frozen=True)
class TrainingData:
    """Every labelled example, as training reads them, and the instant they were read at."""

    texts: list[str]
    labels: list[str]
    vectors: np.ndarray | None  # the frozen embeddings, when there is an embedder
    created_at: list[datetime]
    until: datetime
    embedded_now: int


async def training_data(pool: asyncpg.Pool, embedder: Embedder | None) -> TrainingData:
    embedded = await embed_missing(pool, embedder) if embedder is not None else 0
    async with pool.acquire() as conn:
        rows, until = await examples_db.training_set(conn)
    labels = [label_of(r.category, r.subcategory) for r in rows]
    if len(set(labels)) < 2:
        raise NoLocalModel("at least two labels are needed to train; import labelled history first")
    vectors = None
    if embedder is not None:
        vectors = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in rows])
    return TrainingData([r.text for r in rows], labels, vectors, [r.created_at for r in rows], until, embedded)


async def fit(data: TrainingData, embedder: Embedder | None, oof_logits: np.ndarray | None = None) -> LocalModel:
    """The full recipe on every example (fine-tuning the encoder when the embedder allows it);
    `oof_logits`: the cheap recipe's cross-validated logits, when the caller has them already."""
    tune_base = getattr(embedder, "tunable_path", None) if embedder is not None and torch_available() else None
    return await model_thread.run(
        train, data.texts, data.labels, data.vectors, tune_base=tune_base, tuned_temperature=TUNED_TEMPERATURE,
        oof_logits=oof_logits,
    )


async def store(
    conn: Connection, model: LocalModel, data: TrainingData, embedder: Embedder | None, *,
    status: Literal["active", "rejected"], cv_accuracy: float | None = None,
) -> UUID:
    model_id = await triage_models.save(
        conn,
        kind=model.kind,
        embedding_model=embedder.model if embedder else None,
        labels=model.labels,
        n_examples=len(data.texts),
        examples_until=data.until,
        train_seconds=model.train_seconds,
        metrics={"temperature": model.temperature, "timings": model.timings},
        payload=model.dumps(),
        status=status,
        cv_accuracy=cv_accuracy,
    )
    await triage_models.prune(conn)
    return model_id


async def train_local(pool: asyncpg.Pool, embedder: Embedder | None) -> TrainReport:
    """Train and activate at once: an operator's explicit `cx triage train` skips the retrain gate."""
    started = time.perf_counter()
    data = await training_data(pool, embedder)
    model = await fit(data, embedder)
    async with transaction(pool) as conn:
        await store(conn, model, data, embedder, status="active")
    report = TrainReport(len(data.texts), len(model.labels), data.embedded_now, time.perf_counter() - started,
                         model.kind)
    log.info("triage.trained", **report.__dict__)
    return report


class LocalTriager:
    name = "local"

    def __init__(
        self,
        pool: asyncpg.Pool,
        taxonomy: Taxonomy | None,
        embedder: Embedder | None,
        *,
        languages: frozenset[str] = frozenset({"en"}),
        foreign_language_cap: float = 0.5,
        refresh_seconds: float = 1.0,
    ) -> None:
        self._pool, self._taxonomy, self._embedder = pool, taxonomy, embedder
        self.languages, self.foreign_language_cap = languages, foreign_language_cap
        # How stale the model and its memories may be: asking the database before every case
        # costs two round trips; once a second still learns a correction before a person notices.
        self._refresh_seconds = refresh_seconds
        self._checked_at = float("-inf")
        self._model: LocalModel | None = None
        self._model_id: object = None
        self._seen_until: object = None
        self._lock = asyncio.Lock()

    async def _current(self) -> tuple[LocalModel, list[LLMUsage]]:
        """The active stored model, with every example added since it was trained in its memory
        (and the usage of embedding those examples, if it had to)."""
        if self._model is not None and time.monotonic() - self._checked_at < self._refresh_seconds:
            return self._model, []
        async with self._lock, self._pool.acquire() as conn:
            self._checked_at = time.monotonic()
            active = await triage_models.active_id(conn)
            if active is None:
                raise NoLocalModel("no local triage model yet: run `cx cases import` and `cx triage train`")
            if active != self._model_id:
                stored = await triage_models.load(conn, active)
                assert stored is not None
                if stored.embedding_model and (self._embedder is None or self._embedder.model != stored.embedding_model):
                    raise NoLocalModel(
                        f"the stored model was trained with embeddings from {stored.embedding_model}; "
                        "configure the same model or retrain with `cx triage train`"
                    )
                self._model = await model_thread.run(LocalModel.loads, stored.payload)
                self._model_id, self._seen_until = active, stored.examples_until
            fresh = await examples_db.examples_since(conn, self._seen_until)
            assert self._model is not None
            usage: list[LLMUsage] = []
            if fresh:
                usage = await self._remember(self._model, fresh)
                self._seen_until = fresh[-1].created_at
            return self._model, usage

    async def _remember(self, model: LocalModel, fresh: list[examples_db.EmbeddedExample]) -> list[LLMUsage]:
        if not model.uses_embeddings or self._embedder is None:
            return []  # a text-only model learns them at the next retrain
        missing = [f.text for f in fresh if f.embedding is None]
        usage: list[LLMUsage] = []
        computed: list[np.ndarray] = []
        if missing:
            vectors, call = await self._embedder.embed(missing)
            computed, usage = list(vectors), [call]
        pending = iter(computed)
        stacked = np.stack([f.embedding if f.embedding is not None else next(pending) for f in fresh])
        await model_thread.run(
            model.remember,
            [f.text for f in fresh],
            [label_of(f.category, f.subcategory) for f in fresh],
            stacked.astype(np.float32),
        )
        return usage

    async def classify(self, texts: list[str]) -> Classified:
        """Labels and calibrated confidences for a batch of texts."""
        model, usage = await self._current()
        vectors = None
        if model.uses_embeddings:
            assert self._embedder is not None
            vectors, call = await self._embedder.embed(texts)
            usage = [*usage, call]
        probs = await model_thread.run(model.predict, texts, vectors)
        best = probs.argmax(axis=1)
        return Classified([model.labels[i] for i in best], probs[np.arange(len(texts)), best], usage)

    async def triage(self, item: TriageInput) -> Triaged:
        started = time.perf_counter()
        classified = await self.classify([item.text])
        [label], [confidence] = classified.labels, classified.confidence
        language = text_signals.detect_language(item.text)
        reason = f"nearest labelled history says {label} ({confidence:.0%})"
        if language not in self.languages:
            # The history is in other languages: the model's confidence means nothing here.
            confidence = min(float(confidence), self.foreign_language_cap)
            reason += f"; the message is in {language!r}, the history is not, so a person checks it"
        default: Severity
        if self._taxonomy is None:
            category, subcategory, default = label, None, "medium"
        else:
            resolved = self._taxonomy.resolve(label)
            if resolved is None:
                raise NoLocalModel(f"the model predicts {label!r}, which taxonomy {self._taxonomy.name} lacks; retrain")
            category, subcategory = resolved
            default = self._taxonomy.categories[category].default_priority
        result = TriageResult(
            category=category,
            subcategory=subcategory,
            priority=text_signals.priority(default, item.severity, item.text),
            sentiment=text_signals.sentiment(item.text),
            language=language,
            summary=text_signals.summary(item.subject, item.body),
            error_codes=text_signals.error_codes(item.text),
            confidence=float(confidence),
            reason=reason,
            triager=self.name,
            model=self._model.kind if self._model else "local",
        )
        # The model's own call, its embedding calls counted apart (their latency is inside this one's).
        model_call = LLMUsage(step="triage", provider="local", model=result.model,
                              latency_ms=int((time.perf_counter() - started) * 1000))
        embeddings = [call.model_copy(update={"step": "triage"}) for call in classified.usage]
        return Triaged(result, [*embeddings, model_call])


def similar_examples(pool: asyncpg.Pool, embedder: Embedder) -> SimilarExamples:
    """Few-shot context for Claude: the labelled examples nearest to a text (HNSW in pgvector)."""

    async def similar(text: str, k: int) -> tuple[list[LabelledExample], LLMUsage]:
        vectors, usage = await embedder.embed([text])
        async with pool.acquire() as conn:
            rows = await examples_db.nearest(conn, vectors[0], k)
        return [LabelledExample(text=t, label=label_of(c, s)) for c, s, _, t in rows], usage.model_copy(
            update={"step": "triage"})

    return similar
