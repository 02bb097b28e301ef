"""Advisory locks that cannot outlive their holder, on one pooled connection.

A holder does all its work on the connection that holds the lock, committing as often as it needs
(a session lock survives commits; a transaction-scoped one would not), and never needs a second
connection while it waits for an outside service: a worker running as many jobs as the pool has
connections cannot deadlock on them. The pool skips asyncpg's reset on release (db/pool.py), so the
unlock must be certain: if it is not confirmed (the holder cancelled mid-statement, the connection
broken), the connection is closed instead of returned, and the server drops the lock with its session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from db.connection import Connection

_LOCK = "SELECT pg_advisory_lock(hashtextextended($1, 0))"
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


@asynccontextmanager
async def advisory_lock(pool: asyncpg.Pool, key: str, *, wait: float) -> AsyncIterator[Connection]:
    """The connection holding the lock named `key` for the block, waiting at most `wait` seconds
    for another holder (TimeoutError after that)."""
    async with _holding(pool, key, wait) as conn:
        assert conn is not None  # a waited-for lock is taken or raises
        yield conn


@asynccontextmanager
async def try_advisory_lock(pool: asyncpg.Pool, key: str) -> AsyncIterator[Connection | None]:
    """The connection holding the lock named `key` for the block, or None at once when another
    session holds it."""
    async with _holding(pool, key, None) as conn:
        yield conn


@asynccontextmanager
async def _holding(pool: asyncpg.Pool, key: str, wait: float | None) -> AsyncIterator[Connection | None]:
    async with pool.acquire() as conn:
        # Until the server says otherwise the lock may be held: a cancellation can land after it was granted.
        held = True
        try:
            if wait is None:
                held = bool(await conn.fetchval(_TRY_LOCK, key))
            else:
                await conn.execute(_LOCK, key, timeout=wait)
            yield conn if held else None
        finally:
            if held:
                try:
                    await conn.execute(_UNLOCK, key)
                except BaseException:
                    conn.terminate()
                    raise


async def transaction_lock(conn: Connection, key: str) -> None:
    """Hold the lock named `key` until the caller's transaction ends (it cannot outlive it)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", key)
