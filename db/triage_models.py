"""Stored local triage models: save a trained one, load the newest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class StoredModel:
    model_id: UUID
    kind: str
    embedding_model: str | None
    labels: list[str]
    n_examples: int
    examples_until: datetime
    payload: bytes
    created_at: datetime


async def save(
    conn: Connection,
    *,
    kind: str,
    embedding_model: str | None,
    labels: list[str],
    n_examples: int,
    examples_until: datetime,
    train_seconds: float,
    metrics: dict[str, Any],
    payload: bytes,
) -> UUID:
    model_id: UUID = await conn.fetchval(
        "INSERT INTO triage_models (kind, embedding_model, labels, n_examples, examples_until, train_seconds, "
        "metrics, payload) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING model_id",
        kind, embedding_model, labels, n_examples, examples_until, train_seconds, json.dumps(metrics), payload,
    )
    return model_id


@dataclass(frozen=True)
class ModelSummary:
    kind: str
    embedding_model: str | None
    n_examples: int
    created_at: datetime


async def newest_summary(conn: Connection) -> ModelSummary | None:
    """The newest model's kind and provenance, without its payload."""
    row = await conn.fetchrow(
        "SELECT kind, embedding_model, n_examples, created_at FROM triage_models ORDER BY created_at DESC LIMIT 1"
    )
    return ModelSummary(**dict(row)) if row else None


async def newest_id(conn: Connection) -> UUID | None:
    model_id: UUID | None = await conn.fetchval("SELECT model_id FROM triage_models ORDER BY created_at DESC LIMIT 1")
    return model_id


async def load(conn: Connection, model_id: UUID) -> StoredModel | None:
    row = await conn.fetchrow(
        "SELECT model_id, kind, embedding_model, labels, n_examples, examples_until, payload, created_at "
        "FROM triage_models WHERE model_id = $1",
        model_id,
    )
    return StoredModel(**{**dict(row), "labels": list(row["labels"])}) if row else None


async def prune(conn: Connection, keep: int = 3) -> int:
    """Drop all but the newest `keep` models: they are large."""
    dropped: int = await conn.fetchval(
        "WITH old AS (DELETE FROM triage_models WHERE model_id NOT IN "
        "(SELECT model_id FROM triage_models ORDER BY created_at DESC LIMIT $1) RETURNING 1) "
        "SELECT count(*) FROM old",
        keep,
    )
    return dropped
