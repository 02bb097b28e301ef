"""What a backup and a restore ask of the database: the server's version, whether a database is
empty, and the statements a restore runs before the archive's own."""

from __future__ import annotations

from dataclasses import dataclass

from db.connection import Connection


@dataclass(frozen=True)
class DatabaseContents:
    relations: int  # tables, views and sequences in schema public, an extension's own aside
    migration: int | None  # the newest migration the ledger records; None without a ledger

    @property
    def empty(self) -> bool:
        return self.relations == 0


async def server_major(conn: Connection) -> int:
    """The server's major version (18 for 18.6): the oldest pg_dump that can read it."""
    number: str = await conn.fetchval("SHOW server_version_num")
    return int(number) // 10000


async def contents(conn: Connection) -> DatabaseContents:
    # An extension's own tables (PostGIS's spatial_ref_sys, say) come with the extension, which a
    # managed server may have installed before we ever connected: they do not make a database ours.
    relations: int = await conn.fetchval(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        """
    )
    migration: int | None = None
    if await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL"):
        migration = await conn.fetchval("SELECT max(version) FROM public.schema_migrations")
    return DatabaseContents(relations, migration)


# Sent ahead of the archive's script, inside its transaction. HNSW indexes are rebuilt from the rows:
# with the default 64 MB the graph of 100k 384-d chunks does not fit and the build crawls.
RESTORE_PROLOGUE = """
SET client_min_messages = warning;
SET maintenance_work_mem = '512MB';
"""

# --force: the schema goes as a whole, so nothing of it outlives the restore (a table a newer
# version added would otherwise stay, unknown to the restored ledger). Waiting on a running cx's
# locks ends with an error rather than hanging. The archive's script resets lock_timeout to 0.
REPLACE_SCHEMA = """
SET lock_timeout = '30s';
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
"""
