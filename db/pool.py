"""The asyncpg pool (with the pgvector codec on every connection) and the transaction helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgvector.asyncpg import register_vector

from db.connection import Connection
from db.kb import SESSION_SETTINGS


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset on release (UNLISTEN, RESET ALL, advisory unlock: a round trip on every
    checkout). Pooled connections carry no session state back: LISTEN lives on the worker's own
    connection, which is closed, not released; the only advisory locks taken on pooled connections
    are db/locks.py's, which unlock before release or close the connection instead."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool; the schema must already be migrated (the vector type must exist)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session,
        server_settings=SESSION_SETTINGS,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """One connection in one transaction: commit on success, roll back on any error."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
