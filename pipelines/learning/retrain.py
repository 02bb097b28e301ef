"""Retraining the local triager behind a quality gate: the candidate replaces the active model only
if its cross-validated accuracy is not lower.

Both figures come from the same protocol on the same examples, so they differ only by what each
model learns from: k folds (stratified by label, fixed seed) over every labelled example now.
For each fold, two models are fitted on the other folds and scored on it:
- candidate: the current recipe on every training example;
- current: the active model's recipe (its stored hyper-parameters, with or without embeddings as
  it was trained) on the training examples the active model was trained on (created up to its
  `examples_until`), its kNN memory then given the later ones whose labels it knows, as a serving
  LocalTriager does. It is the active model as it answers today, re-fitted without the fold.
Neither side fine-tunes the encoder per fold (minutes each): the comparison is the recipe's cheap
part on either training set, as the calibration in model.train is. An accuracy is the share of
all examples whose out-of-fold prediction equals their label; a label no training fold holds is
a miss for both.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import numpy as np
import structlog
from sklearn.model_selection import KFold, StratifiedKFold

from db import triage_models
from db.connection import Connection
from db.pool import transaction
from db.retrains import RetrainOutcome, examples_since_last_training, record
from pipelines import model_thread
from pipelines.ports import Embedder
from pipelines.taxonomy import Taxonomy
from pipelines.triage.local.model import LocalModel, Recipe, fit_cheap
from pipelines.triage.local.triager import History, TrainingData, fit, read_history, store, training_data

log = structlog.get_logger(__name__)

FOLDS = 5
SEED = 0


async def retrain_due(conn: Connection, min_new: int) -> int | None:
    """How many labelled examples were added since the last training (kept or rejected), when at
    least `min_new`; None otherwise, and None before the first model (an operator trains that one)."""
    count = await examples_since_last_training(conn)
    return count if count is not None and count >= min_new else None


@dataclass(frozen=True)
class GateScore:
    n: int
    folds: int
    candidate_correct: int
    current_correct: int | None  # None: no usable active model
    # The candidate's out-of-fold logits (sorted label order) when every fold trained on every
    # label: the final fit calibrates its temperature on them instead of folding again.
    candidate_logits: np.ndarray | None = field(repr=False)

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate_correct / self.n

    @property
    def current_accuracy(self) -> float | None:
        return None if self.current_correct is None else self.current_correct / self.n

    @property
    def passed(self) -> bool:
        # Compared as counts over the same examples: "not lower" without float ties.
        return self.current_correct is None or self.candidate_correct >= self.current_correct


def splits(labels: list[str], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds, stratified when some label has k examples; rarer labels land in fewer folds."""
    k = min(folds, len(labels))
    counts = np.unique(labels, return_counts=True)[1]
    if counts.max() < k:
        return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros((len(labels), 1))))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros((len(labels), 1)), labels))


def _fold_logits(texts: list[str], labels: list[str], frozen: np.ndarray | None, fit_idx: np.ndarray,
                 test_idx: np.ndarray, recipe: Recipe,
                 remember_idx: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """Fit the cheap recipe on `fit_idx`, give its kNN memory `remember_idx`: the labels it knows
    and its logits for `test_idx`."""
    names = sorted({labels[i] for i in fit_idx})
    if len(names) < 2:
        return names, np.zeros((len(test_idx), 1))  # one label seen: the only answer it can give
    index = {label: i for i, label in enumerate(names)}
    model = fit_cheap([texts[i] for i in fit_idx], np.array([index[labels[i]] for i in fit_idx]), names,
                      None if frozen is None else frozen[fit_idx], recipe)
    if remember_idx is not None and len(remember_idx) and frozen is not None:
        model.remember([texts[i] for i in remember_idx], [labels[i] for i in remember_idx], frozen[remember_idx])
    return names, model.logits([texts[i] for i in test_idx], None if frozen is None else frozen[test_idx])


def _hits(names: list[str], logits: np.ndarray, truth: np.ndarray) -> np.ndarray:
    hits: np.ndarray = np.array(names)[logits.argmax(axis=1)] == truth
    return hits


def gate(texts: list[str], labels: list[str], frozen: np.ndarray | None, seen: np.ndarray,
         current: LocalModel | None, *, folds: int = FOLDS, seed: int = SEED) -> GateScore:
    """Both cross-validated accuracies (module docstring). `seen` marks the examples the active
    model was trained on; `current` is that model (None: nothing to compare with)."""
    truth = np.array(labels)
    every = sorted(set(labels))
    candidate = np.zeros(len(texts), dtype=bool)
    kept_current = np.zeros(len(texts), dtype=bool)
    oof: np.ndarray | None = np.zeros((len(texts), len(every)))
    folded = splits(labels, folds, seed)
    for train_idx, test_idx in folded:
        names, logits = _fold_logits(texts, labels, frozen, train_idx, test_idx, Recipe())
        candidate[test_idx] = _hits(names, logits, truth[test_idx])
        if oof is not None and names == every:
            oof[test_idx] = logits
        else:
            oof = None
        if current is None:
            continue
        old, later = train_idx[seen[train_idx]], train_idx[~seen[train_idx]]
        if len(old) == 0:
            continue  # nothing it knew is in this fold's training part: it gets none right
        names, logits = _fold_logits(texts, labels, frozen if current.uses_embeddings else None, old, test_idx,
                                     current.recipe, later)
        kept_current[test_idx] = _hits(names, logits, truth[test_idx])
    return GateScore(len(texts), len(folded), int(candidate.sum()),
                     None if current is None else int(kept_current.sum()), oof)


async def _active(pool: asyncpg.Pool, embedder: Embedder | None) -> tuple[triage_models.StoredModel | None,
                                                                          LocalModel | None]:
    """The active model's row, and the model itself when this deployment can serve it (one
    trained with another embedder cannot answer here, so there is nothing to compare with)."""
    async with pool.acquire() as conn:
        model_id = await triage_models.active_id(conn)
        stored = await triage_models.load(conn, model_id) if model_id else None
    if stored is None:
        return None, None
    if stored.embedding_model and (embedder is None or embedder.model != stored.embedding_model):
        return stored, None
    return stored, await model_thread.run(LocalModel.loads, stored.payload)


async def retrain(pool: asyncpg.Pool, embedder: Embedder | None, *, folds: int = FOLDS,
                  seed: int = SEED, history: History | None = None, taxonomy: Taxonomy | None = None) -> RetrainOutcome:
    """The RETRAIN job: train a candidate on every labelled example, measure both models, and make
    the candidate active only if it is not worse; otherwise store it as rejected. The switch, the
    candidate and the record of both figures are one transaction: a retry never leaves two active."""
    started_at, started = datetime.now(UTC), time.perf_counter()
    data: TrainingData = await training_data(pool, embedder, history=history, taxonomy=taxonomy)
    stored, current = await _active(pool, embedder)
    until = stored.examples_until if stored else None
    seen = np.array([until is not None and created <= until for created in data.created_at], dtype=bool)
    score = await model_thread.run(gate, data.texts, data.labels, data.vectors, seen, current, folds=folds, seed=seed)
    model = await fit(data, embedder, score.candidate_logits)
    compared_with = stored.model_id if stored else None
    async with transaction(pool) as conn:
        kept = score.passed and await triage_models.lock_active(conn) == compared_with
        model_id = await store(conn, model, data, embedder, status="active" if kept else "rejected",
                               cv_accuracy=score.candidate_accuracy)
        outcome = RetrainOutcome(
            examples=score.n, new_examples=int((~seen).sum()), candidate_accuracy=score.candidate_accuracy,
            current_accuracy=score.current_accuracy, kept=kept, finished_at=datetime.now(UTC),
            started_at=started_at, folds=score.folds, model_id=model_id,
        )
        await record(conn, outcome, compared_with)
    log.info("triage.retrained", kept=kept, passed=score.passed, examples=outcome.examples,
             new_examples=outcome.new_examples, candidate_accuracy=round(outcome.candidate_accuracy, 4),
             current_accuracy=outcome.current_accuracy, seconds=round(time.perf_counter() - started, 1))
    return outcome


async def retrain_if_due(pool: asyncpg.Pool, embedder: Embedder | None, min_new: int,
                         taxonomy: Taxonomy | None = None) -> RetrainOutcome | None:
    """The job's entry: a retried job whose retrain already committed finds nothing due and stops.
    Due, but with the same history key as the active model (examples rewritten to the same content),
    it stops too: the candidate would be the active model again."""
    async with pool.acquire() as conn:
        due = await retrain_due(conn, min_new)
        active_key = await triage_models.active_history_key(conn)
    if due is None:
        return None
    history = await read_history(pool, embedder, taxonomy)
    if history.key == active_key:
        log.info("triage.retrain_skipped", reason="history unchanged", new_examples=due)
        return None
    return await retrain(pool, embedder, history=history, taxonomy=taxonomy)
