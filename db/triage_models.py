"""Stored local triage models: save a trained one, load the active one.

One model is active at a time (a partial unique index says so): every triager loads it. A gated
retrain's candidate that lost is stored as rejected, for inspection; a replaced one is retired."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from db.connection import Connection
from db.locks import transaction_lock

# Serialises switches of the active model (a manual train and a retrain at once).
_SWITCH = "triage_models.active"


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


async def lock_active(conn: Connection) -> UUID | None:
    """Hold the switch lock until the caller's transaction ends; the active model's id under it."""
    await transaction_lock(conn, _SWITCH)
    return await active_id(conn)


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
    status: Literal["active", "rejected"] = "active",
    cv_accuracy: float | None = None,
    history_key: str | None = None,
) -> UUID:
    """Store a model. An active one retires the previous active one in the same transaction."""
    async with conn.transaction():
        if status == "active":
            await transaction_lock(conn, _SWITCH)
            await conn.execute("UPDATE triage_models SET status = 'retired' WHERE status = 'active'")
        model_id: UUID = await conn.fetchval(
            "INSERT INTO triage_models (kind, embedding_model, labels, n_examples, examples_until, train_seconds, "
            "metrics, payload, status, cv_accuracy, history_key) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11) RETURNING model_id",
            kind, embedding_model, labels, n_examples, examples_until, train_seconds, json.dumps(metrics), payload,
            status, cv_accuracy, history_key,
        )
    return model_id


@dataclass(frozen=True)
class ModelSummary:
    kind: str
    embedding_model: str | None
    n_examples: int
    created_at: datetime


async def active_summary(conn: Connection) -> ModelSummary | None:
    """The active model's kind and provenance, without its payload."""
    row = await conn.fetchrow(
        "SELECT kind, embedding_model, n_examples, created_at FROM triage_models WHERE status = 'active'"
    )
    return ModelSummary(**dict(row)) if row else None


async def active_history_key(conn: Connection) -> str | None:
    key: str | None = await conn.fetchval("SELECT history_key FROM triage_models WHERE status = 'active'")
    return key


async def active_id(conn: Connection) -> UUID | None:
    model_id: UUID | None = await conn.fetchval("SELECT model_id FROM triage_models WHERE status = 'active'")
    return model_id


async def load(conn: Connection, model_id: UUID) -> StoredModel | None:
    row = await conn.fetchrow(
        "SELECT model_id, kind, embedding_model, labels, n_examples, examples_until, payload, created_at "
        "FROM triage_models WHERE model_id = $1",
        model_id,
    )
    return StoredModel(**{**dict(row), "labels": list(row["labels"])}) if row else None


@dataclass(frozen=True)
class ReusedModel:
    model_id: UUID
    kind: str
    labels: int
    n_examples: int
    created_at: datetime
    was_active: bool


async def reuse(conn: Connection, history_key: str) -> ReusedModel | None:
    """Make the model trained on this history key active, if one is stored: the active one, else
    the newest that served before (retired). A rejected candidate lost its gate: never. Returns it."""
    async with conn.transaction():
        await transaction_lock(conn, _SWITCH)
        row = await conn.fetchrow(
            "SELECT model_id, kind, cardinality(labels) AS labels, n_examples, created_at, "
            "status = 'active' AS was_active FROM triage_models "
            "WHERE history_key = $1 AND status IN ('active', 'retired') "
            "ORDER BY status = 'active' DESC, created_at DESC LIMIT 1",
            history_key,
        )
        if row is None:
            return None
        if not row["was_active"]:
            await conn.execute("UPDATE triage_models SET status = 'retired' WHERE status = 'active'")
            await conn.execute("UPDATE triage_models SET status = 'active' WHERE model_id = $1", row["model_id"])
    return ReusedModel(**dict(row))


async def prune(conn: Connection, keep: int = 2) -> int:
    """Drop all but the active model, the newest `keep` retired and the newest `keep` rejected ones:
    they are large. Counted apart, so that rejected candidates never push out the models that served
    before, which `reuse` brings back when the history returns to what they were trained on."""
    dropped: int = await conn.fetchval(
        "WITH ranked AS (SELECT model_id, row_number() OVER (PARTITION BY status ORDER BY created_at DESC) AS n "
        "FROM triage_models WHERE status <> 'active'), "
        "old AS (DELETE FROM triage_models WHERE model_id IN (SELECT model_id FROM ranked WHERE n > $1) "
        "RETURNING 1) SELECT count(*) FROM old",
        keep,
    )
    return dropped
