"""Database facts for health checks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from db.connection import Connection


@dataclass(frozen=True)
class DatabaseFacts:
    server_version: str
    pgvector_version: str | None
    latency_ms: float


async def ping(conn: Connection) -> DatabaseFacts:
    started = time.perf_counter()
    row = await conn.fetchrow(
        "SELECT current_setting('server_version') AS server_version, "
        "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version"
    )
    assert row is not None  # a SELECT without FROM always returns one row
    return DatabaseFacts(
        row["server_version"], row["pgvector_version"], (time.perf_counter() - started) * 1000
    )
