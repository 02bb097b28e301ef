"""The scratch database a bench builds its desk in, on the embedded server or DATABASE_URL's server.

`async with scratch_database(...) as scratch:` creates the named database, migrates it and builds
it with the bench's own `build(dsn)`, then drops it on the way out. With `keep`, the database keeps
its name, stays after the run, and a later run with `keep` whose `spec` is the same (stored as the
database's comment once the build is done, so a half-built one is never reused) skips the build; the
embedded server's data directory is then <tmp>/`keep_dir` unless `data_dir` names one."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.runtime.database import connect, migrate_database, resolve_dsn, with_database  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from db import admin  # noqa: E402


@dataclass(frozen=True)
class Scratch:
    dsn: str
    name: str
    reused: bool  # kept from an earlier run with the same spec: not built again
    seconds: float  # migrating and building (or only migrating, when reused)


def server_settings(keep: bool, keep_dir: str, data_dir: Path | None) -> Settings:
    """DATABASE_URL's server; else the embedded one in `data_dir`, in CX_DATA_DIR, or in a directory
    of its own (<tmp>/`keep_dir` with `keep`, so a kept database is found again, else a new one)."""
    settings = load_settings()
    if settings.database_url is not None or (data_dir is None and "CX_DATA_DIR" in os.environ):
        return settings
    if data_dir is None:
        data_dir = (Path(tempfile.gettempdir()) / keep_dir if keep
                    else Path(tempfile.mkdtemp(prefix=f"{keep_dir}-")))
    return load_settings(cx_data_dir=data_dir)


async def built_spec(conn: asyncpg.Connection, name: str) -> dict[str, Any] | None:
    comment = await conn.fetchval(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name)
    try:
        return json.loads(comment) if comment else None
    except ValueError:
        return None


@asynccontextmanager
async def _admin(server_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(server_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(name: str, spec: dict[str, Any], build: Callable[[str], Awaitable[object]], *,
                           keep: bool, keep_dir: str, data_dir: Path | None = None,
                           rebuild: bool = False) -> AsyncIterator[Scratch]:
    """A migrated database built by `build(dsn)`; `name` is its name when kept (else a unique one)."""
    server_dsn = await resolve_dsn(server_settings(keep, keep_dir, data_dir))
    if not keep:
        name = f"{name}_{uuid.uuid4().hex[:8]}"
    async with _admin(server_dsn) as conn:
        reused = keep and not rebuild and await built_spec(conn, name) == spec
        if not reused:
            await admin.drop_database(conn, name)
            await admin.create_database(conn, name)
    dsn = with_database(server_dsn, name)
    try:
        started = time.perf_counter()
        await migrate_database(dsn)
        if not reused:
            await build(dsn)
            async with _admin(server_dsn) as conn:
                await conn.execute(f"COMMENT ON DATABASE {name} IS '{json.dumps(spec)}'")
        yield Scratch(dsn, name, reused, time.perf_counter() - started)
    finally:
        if not keep:
            async with _admin(server_dsn) as conn:
                await admin.drop_database(conn, name)
