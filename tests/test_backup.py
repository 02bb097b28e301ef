"""Backups: `cx db backup` and `cx db restore` round-trip a desk's data row for row (cases, KB
vectors, the queue, Slack references); a restore refuses a database that is not empty and changes
nothing on any failure; the nightly job writes to BACKUP_DIR and keeps the newest BACKUP_KEEP of ours."""

from __future__ import annotations

import asyncio
import random
import stat
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.backup import BackupError, backup_database, embedded_bin_dir, find_tools
from bot.runtime.metrics import Metrics
from bot.runtime.scheduler import Scheduler, schedules
from bot.settings import load_settings
from db import jobs
from db.migrate import migrate
from db.migrate import status as migration_status
from pipelines.jobs import CaseJob, JobName
from tests.cli_runner import cx, cx_env
from tests.support.cases import new_case, review_case

WHEEL_TOOLS = str(embedded_bin_dir())


async def seed_desk(pool: asyncpg.Pool) -> None:
    """Cases with their interactions and triage jobs, a drafted case in review with its card's Slack
    message, the demo KB's chunks with 384-d vectors, and queued jobs."""
    for text in ("My card was declined at the shop.", "Please close my account.", "Où est mon virement ?"):
        await new_case(pool, text)
    case_id, _ = await review_case(pool)
    rng = random.Random(15)
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO embedding_space (provider, model, dimensions) "
                           "VALUES ('local', 'all-MiniLM-L6-v2', 384) ON CONFLICT DO NOTHING")
        chunks = [r["chunk_id"] for r in await conn.fetch("SELECT chunk_id FROM kb_chunks")]
        await conn.executemany("UPDATE kb_chunks SET embedding = $1 WHERE chunk_id = $2",
                               [([rng.uniform(-1, 1) for _ in range(384)], c) for c in chunks])
        await conn.execute(
            "INSERT INTO slack_messages (case_id, purpose, channel_id, ts) VALUES ($1, 'review_card', 'C0REVIEW', $2)",
            case_id, "1764820000.000100")
        await conn.execute("INSERT INTO slack_events_seen (event_id) VALUES ('Ev0BACKUP')")
        await jobs.enqueue(conn, JobName.REVIEW_CARD, CaseJob(case_id=case_id).payload(), dedupe_key=f"card:{case_id}")


async def fingerprint(dsn: str) -> dict[str, object]:
    """Per table and materialized view, its row count and the md5 of its rows in order (vectors
    included); every sequence's position; every index's definition."""
    conn = await asyncpg.connect(dsn)
    try:
        relations = [r["name"] for r in await conn.fetch(
            "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') ORDER BY 1")]
        found: dict[str, object] = {}
        for name in relations:
            row = await conn.fetchrow(
                f'SELECT count(*) AS n, md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), \'\')) AS h '
                f'FROM public."{name}" t')
            found[name] = (row["n"], row["h"])
        for r in await conn.fetch("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"):
            found["seq:" + r["sequencename"]] = r["last_value"]
        found["indexes"] = sorted(r["indexdef"] for r in await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'"))
        return found
    finally:
        await conn.close()


def _env(dsn: str, tmp_path, **more: str) -> dict[str, str]:
    # Wide enough that rich never wraps an error line around a test database's long DSN.
    return cx_env(DATABASE_URL=dsn, PG_BIN_DIR=WHEEL_TOOLS, CX_DATA_DIR=str(tmp_path / "cx-data"), COLUMNS="1000",
                  **more)


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_a_backup_restores_row_for_row_and_a_failed_or_refused_restore_changes_nothing(
        pool, dsn, empty_dsn, tmp_path):
    await seed_desk(pool)
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM cases) AS cases, (SELECT count(*) FROM case_interactions) AS interactions, "
        "(SELECT count(*) FROM kb_chunks WHERE vector_dims(embedding) = 384) AS vectors, "
        "(SELECT count(*) FROM pgqueuer) AS jobs, (SELECT count(*) FROM slack_messages) AS slack")
    assert counts["cases"] == 4 and counts["interactions"] >= 4 and counts["vectors"] >= 20
    assert counts["jobs"] >= 5 and counts["slack"] == 1
    original = await fingerprint(dsn)
    last_job = await pool.fetchval("SELECT max(id) FROM pgqueuer")
    archive = tmp_path / "desk.dump"

    made = cx("db", "backup", str(archive), env=_env(dsn, tmp_path))
    assert made.returncode == 0, made.stderr
    assert str(archive) in made.stdout and f"{archive.stat().st_size:,} bytes" in made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # every customer's data is in it

    # The original gets a case the backup does not have; no restore but a forced, whole one changes it.
    await new_case(pool, "A case written after the backup.")
    changed = await fingerprint(dsn)
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size - 4096])  # its table of contents is whole
    garbage = tmp_path / "garbage.dump"
    garbage.write_text("not a backup\n")
    restored, refused, missing, corrupt, cut = await asyncio.gather(*(
        asyncio.to_thread(cx, "db", "restore", *args, env=_env(target, tmp_path)) for target, args in (
            (empty_dsn, [str(archive)]), (dsn, [str(archive)]), (dsn, [str(tmp_path / "missing.dump"), "--force"]),
            (dsn, [str(garbage), "--force"]), (dsn, [str(truncated), "--force"]))))

    assert restored.returncode == 0, restored.stderr
    assert "up to date" in restored.stdout
    assert await fingerprint(empty_dsn) == original
    conn = await asyncpg.connect(empty_dsn)
    try:  # what `cx db status` shows: every migration applied, and the ledger matches this version's files
        assert all(m.applied_at is not None for m in await migration_status(conn))
        assert await migrate(conn) == []
        assert await jobs.enqueue(conn, JobName.TRIAGE, b"{}") == last_job + 1  # the queue's sequence came along
    finally:
        await conn.close()

    assert [r.returncode for r in (refused, missing, corrupt, cut)] == [2, 2, 2, 2]
    assert "is not empty" in _error_line(refused) and "--force" in refused.stderr
    assert _error_line(missing).endswith("missing.dump: no such file")
    assert "is not a backup pg_restore can read" in _error_line(corrupt)
    assert "pg_restore failed, nothing was restored" in _error_line(cut)
    assert await fingerprint(dsn) == changed

    forced = cx("db", "restore", str(archive), "--force", env=_env(dsn, tmp_path))
    assert forced.returncode == 0, forced.stderr
    assert await fingerprint(dsn) == original


async def test_tools_that_are_missing_or_older_than_the_server_are_named(dsn, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    old = tmp_path / "old-bin"
    old.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        script = old / name
        script.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'\n")
        script.chmod(0o755)

    def with_bin(folder) -> object:
        return load_settings(_env_file=None, database_url=dsn, pg_bin_dir=folder, cx_data_dir=tmp_path)

    with pytest.raises(BackupError, match=r"pg_dump 15 \(.*old-bin/pg_dump\) is older than the server "
                                          r"\(PostgreSQL 18\): install the PostgreSQL 18 client tools"):
        await find_tools(with_bin(old), 18)
    with pytest.raises(BackupError, match=r"pg_dump not found in PG_BIN_DIR"):
        await find_tools(with_bin(empty), 18)
    assert (await find_tools(with_bin(old), 15)).psql == old / "psql"
    # The embedded server's tools are the wheel's, whatever PATH holds.
    embedded = await find_tools(load_settings(_env_file=None, cx_data_dir=tmp_path), 18)
    assert embedded.pg_dump.parent == embedded_bin_dir() and embedded.pg_restore.is_file()

    # On the command line: no pg_dump on PATH is one line and exit 2, and no file is written.
    backup_dir = tmp_path / "backups"
    result = cx("db", "backup", env=cx_env(DATABASE_URL=dsn, PATH=str(empty), BACKUP_DIR=str(backup_dir),
                                           COLUMNS="1000"))
    assert result.returncode == 2
    assert "pg_dump not found on PATH: install the PostgreSQL 18 client tools" in _error_line(result)
    assert not backup_dir.exists()


async def test_the_nightly_backup_keeps_the_newest_of_ours_and_nothing_else(pool, dsn, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    older = ["cx-20260101-020000.dump", "cx-20260102-020000.dump", "cx-20260103-020000.dump"]
    foreign = ["notes.txt", "cx-before-upgrade.dump", "cx-20260101-020000.dump.bak"]
    for name in older + foreign:
        (folder / name).write_text(name)
    settings = load_settings(_env_file=None, database_url=dsn, pg_bin_dir=WHEEL_TOOLS, cx_data_dir=tmp_path,
                             backup_dir=folder, backup_keep=2)
    await new_case(pool)
    broken = settings.model_copy(update={"pg_bin_dir": tmp_path})  # no pg_dump there
    with pytest.raises(BackupError, match="pg_dump not found"):
        await job_handlers(Deps(broken, pool, Metrics()))[JobName.BACKUP](b"{}")
    assert sorted(p.name for p in folder.iterdir()) == sorted(older + foreign)  # a failed backup deletes nothing

    await job_handlers(Deps(settings, pool, Metrics()))[JobName.BACKUP](b"{}")

    ours = sorted(p.name for p in folder.iterdir() if p.name not in foreign)
    assert len(ours) == 2 and ours[0] == older[-1] and ours[1] > older[-1]
    assert all((folder / name).read_text() == name for name in foreign)
    newest = folder / ours[1]
    assert newest.stat().st_size > 10_000 and newest.read_bytes()[:5] == b"PGDMP"
    with pytest.raises(BackupError, match="already exists"):
        await backup_database(settings, dsn, newest)
    assert newest.read_bytes()[:5] == b"PGDMP"


async def test_the_backup_is_scheduled_once_a_day_at_backup_hour(pool, make_settings):
    settings = make_settings(backup_hour=4, timezone="Europe/Paris")
    [backup] = [s for s in schedules(settings, gmail=False) if s.job == JobName.BACKUP]
    zone = ZoneInfo("Europe/Paris")
    fire = backup.trigger.get_next_fire_time(None, datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    assert fire == datetime(2026, 12, 5, 4, 0, tzinfo=zone)
    scheduler = Scheduler(pool, Metrics(), zone, [backup])
    ticks = [await scheduler.tick(backup, datetime(2026, 12, 5, 3, 0, s, tzinfo=UTC)) for s in (0, 1)]
    assert ticks == [True, False]
    assert [r["entrypoint"] for r in await pool.fetch("SELECT entrypoint FROM pgqueuer")] == [JobName.BACKUP]
    assert not any(s.job == JobName.BACKUP for s in schedules(make_settings(backup_nightly=False), gmail=False))
