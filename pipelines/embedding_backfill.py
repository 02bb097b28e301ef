"""Filling in missing embeddings in batches, for any table that stores them, in the one embedding
space of the deployment."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg
import numpy as np

from db import embedding_space
from db.connection import Connection
from pipelines.ports import Embedder
from pipelines.usage import failed_calls_recorded, record_usage

Pending = Callable[[Connection, int], Awaitable[list[tuple[UUID, str]]]]
Store = Callable[[Connection, Sequence[UUID], np.ndarray], Awaitable[None]]


async def backfill(
    pool: asyncpg.Pool, embedder: Embedder, pending: Pending, store: Store, *, batch: int, step: str,
    progress: Callable[[int], None] | None = None, deployment_space: bool = True,
) -> int:
    """Embed what `pending` returns until nothing is left; returns how many. Another model than the
    recorded one is refused before anything is embedded (or billed); the first batch records it.
    Each batch's call goes in llm_usage under `step`. `deployment_space=False`: vectors of a model
    with a column of its own (the multilingual one), which the recorded space does not concern."""
    if deployment_space:
        async with pool.acquire() as conn:
            await embedding_space.check(conn, embedder.provider, embedder.model)
    done = 0
    while True:
        async with pool.acquire() as conn:
            todo = await pending(conn, batch)
        if not todo:
            return done
        async with failed_calls_recorded(pool, step=step):
            vectors, usage = await embedder.embed([text for _, text in todo])
        async with pool.acquire() as conn, conn.transaction():
            if done == 0 and deployment_space:  # the first vectors fix the dimension; later batches too
                await embedding_space.claim(conn, embedder.provider, embedder.model, int(vectors.shape[1]))
            await store(conn, [i for i, _ in todo], vectors)
            await record_usage(conn, [usage], step=step)
        done += len(todo)
        if progress is not None:
            progress(len(todo))
