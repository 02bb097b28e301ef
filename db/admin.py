"""Server-level facts and chores that come before the schema: databases and extensions."""

from __future__ import annotations

import asyncpg

from db.connection import Connection


async def ensure_database(conn: Connection, name: str) -> None:
    """Create database `name` unless it exists; safe when several processes race to do it."""
    if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        return
    try:
        await create_database(conn, name)
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # another process created it between our check and our CREATE


async def create_database(conn: Connection, name: str) -> None:
    await conn.execute(f"CREATE DATABASE {await _identifier(conn, name)}")


async def drop_database(conn: Connection, name: str) -> None:
    """Drop database `name` if it exists, closing its connections first."""
    await conn.execute(f"DROP DATABASE IF EXISTS {await _identifier(conn, name)} WITH (FORCE)")


async def _identifier(conn: Connection, name: str) -> str:
    # An identifier cannot be a bind parameter; quote_ident does the quoting server-side.
    quoted: str = await conn.fetchval("SELECT quote_ident($1)", name)
    return quoted


async def available_vector_version(conn: Connection) -> str | None:
    """The pgvector version this server could create, installed or not."""
    version: str | None = await conn.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    )
    return version


# For the embedded server's first start, run through the wheel's psql before any pool exists.
SHARED_BUFFERS_SOURCE = "SELECT 'cx:' || coalesce(sourcefile, '') FROM pg_settings WHERE name = 'shared_buffers'"


def set_shared_buffers(megabytes: int) -> str:
    return f"ALTER SYSTEM SET shared_buffers = '{int(megabytes)}MB'"
