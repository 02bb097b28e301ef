"""Row counts of every table in a test database: what a request wrote, whichever tables it touched."""

from __future__ import annotations

import asyncpg


async def table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Exact row counts of every table of the public schema, in one round trip."""
    names = [r["tablename"] for r in await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    union = " UNION ALL ".join(f"SELECT '{n}' AS t, count(*) AS n FROM public.\"{n}\"" for n in names)
    return {r["t"]: r["n"] for r in await pool.fetch(union)}
