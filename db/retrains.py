"""Gated retrains of the local triager: when one is due, and what each one measured."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from db.connection import Connection


class RetrainOutcome(BaseModel):
    """One gated retrain. The two accuracies come from the same folds of the same examples
    (pipelines/learning/retrain.py says how); `kept` is whether the candidate became active."""

    examples: int  # labelled examples the candidate was trained and cross-validated on
    new_examples: int  # of those, created after the model it was compared with was trained
    candidate_accuracy: float
    current_accuracy: float | None  # None: there was no usable active model to compare with
    kept: bool
    finished_at: datetime
    started_at: datetime | None = None
    folds: int | None = None
    model_id: UUID | None = None  # the candidate (None once pruned)


async def examples_since_last_training(conn: Connection) -> int | None:
    """Labelled examples created after the newest stored model (active or rejected) read its
    training set; None when no model was ever trained (the first one is an operator's)."""
    count: int | None = await conn.fetchval(
        "SELECT (SELECT count(*) FROM labelled_examples WHERE created_at > m.until) "
        "FROM (SELECT max(examples_until) AS until FROM triage_models) m WHERE m.until IS NOT NULL"
    )
    return count


async def record(conn: Connection, outcome: RetrainOutcome, compared_with: UUID | None) -> None:
    await conn.execute(
        "INSERT INTO triage_retrains (started_at, finished_at, examples, new_examples, folds, candidate_accuracy, "
        "current_accuracy, kept, model_id, compared_with) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        outcome.started_at or outcome.finished_at, outcome.finished_at, outcome.examples, outcome.new_examples,
        outcome.folds, outcome.candidate_accuracy, outcome.current_accuracy, outcome.kept, outcome.model_id,
        compared_with,
    )


async def latest_retrain(conn: Connection, since: datetime, until: datetime) -> RetrainOutcome | None:
    """The last gated retrain that finished in [since, until)."""
    row = await conn.fetchrow(
        "SELECT examples, new_examples, candidate_accuracy, current_accuracy, kept, finished_at, started_at, "
        "folds, model_id FROM triage_retrains WHERE finished_at >= $1 AND finished_at < $2 "
        "ORDER BY finished_at DESC LIMIT 1",
        since, until,
    )
    return RetrainOutcome(**dict(row)) if row else None
