"""Reading a test database directly, on a connection of its own."""

from __future__ import annotations

import asyncpg


async def count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()
