from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pgqueuer.queries import Queries

from db.migrate import MigrationError, load_migrations, migrate, status


async def test_migrate_twice_applies_nothing_the_second_time(empty_dsn):
    conn = await asyncpg.connect(empty_dsn)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        listed = await status(conn)
    finally:
        await conn.close()
    files = load_migrations()
    assert [m.version for m in first] == [m.version for m in files]
    assert second == []
    assert [s.version for s in listed] == [m.version for m in files]
    assert all(s.applied_at is not None for s in listed)


async def test_concurrent_migrations_apply_each_file_once(empty_dsn):
    conns = [await asyncpg.connect(empty_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r) for r in results) == [0, 0, len(load_migrations())]
    assert count == len(load_migrations())


async def test_an_edited_applied_migration_is_refused(empty_dsn, tmp_path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t1 (id int);")
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn, tmp_path)
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE t1 (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(empty_dsn, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok_table (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    conn = await asyncpg.connect(empty_dsn)
    try:
        with pytest.raises(MigrationError, match="0002_bad.sql failed"):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert [s.version for s in await status(conn, tmp_path) if s.applied_at] == [1]
    finally:
        await conn.close()


async def test_badly_named_migration_files_are_refused(tmp_path):
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_snake_case"):
        load_migrations(tmp_path)


async def test_job_queue_schema_is_what_pgqueuer_expects(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        plan = await Queries.from_asyncpg_connection(conn).plan_upgrade()
    finally:
        await conn.close()
    assert list(plan.statements) == [], "db/migrations/0003 drifted from the installed pgqueuer"
