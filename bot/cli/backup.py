"""`cx db backup` and `cx db restore`: pg_dump archives of the whole database, and their restore."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import UsageError, command, out, settings_from_env
from bot.runtime.backup import BackupError, backup_database, backup_name, check_archive, restore_archive, tools_for
from bot.runtime.database import connect, redact, resolve_dsn
from db import backups
from db.migrate import load_migrations


@command
async def db_backup(
    file: Annotated[Path | None, typer.Argument(
        help="Where to write the archive (default: BACKUP_DIR/cx-YYYYmmdd-HHMMSS.dump, UTC).")] = None,
) -> None:
    """Back the database up with pg_dump (custom format), consistent even while cx runs."""
    settings = settings_from_env()
    target = file if file is not None else settings.backup_directory / backup_name(datetime.now(UTC))
    try:
        made = await backup_database(settings, await resolve_dsn(settings), target)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    out.print(f"{made.path.resolve()}  {made.size:,} bytes  {made.seconds:.1f} s", highlight=False)


@command
async def db_restore(
    file: Annotated[Path, typer.Argument(help="An archive written by `cx db backup`.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace everything in schema public of a database that is not empty.")] = False,
) -> None:
    """Restore an archive into an empty database (one that is not needs --force), all or nothing."""
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    settings = settings_from_env()
    dsn = await resolve_dsn(settings)
    try:
        tools = await tools_for(settings, dsn)
        await check_archive(tools, file)
        before = await _contents(dsn)
        if not before.empty and not force:
            raise UsageError(f"the database at {redact(dsn)} is not empty ({_describe(before)}): nothing was "
                             "changed; restore into an empty database, or pass --force to replace its contents")
        seconds = await restore_archive(tools, dsn, file, replace=not before.empty)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    after = await _contents(dsn)
    out.print(f"Restored {file} into {redact(dsn)} in {seconds:.1f} s; {_schema_note(after)}", highlight=False)


async def _contents(dsn: str) -> backups.DatabaseContents:
    conn = await connect(dsn)
    try:
        return await backups.contents(conn)
    finally:
        await conn.close()


def _describe(contents: backups.DatabaseContents) -> str:
    described = f"{contents.relations} tables, views or sequences"
    if contents.migration is not None:
        described += f", the CX-Catalyst schema at migration {contents.migration:04d}"
    return described


def _schema_note(contents: backups.DatabaseContents) -> str:
    newest = max(m.version for m in load_migrations())
    if contents.migration is None:
        return "the backup has no CX-Catalyst schema (no schema_migrations table)."
    if contents.migration > newest:
        return (f"its schema (migration {contents.migration:04d}) is newer than this cx knows ({newest:04d}): "
                "upgrade cx before starting it.")
    if contents.migration < newest:
        return (f"its schema is at migration {contents.migration:04d}; `cx db migrate` (or starting cx) "
                f"applies the newer ones up to {newest:04d}.")
    return f"its schema is up to date (migration {newest:04d})."
