"""Backup and restore of a large desk with the product's own code (bot/runtime/backup.py): the time of
`cx db backup`'s pg_dump, the archive's size, and the time of `cx db restore` into an empty database.

    python bench/backup.py [--cases 100000] [--chunks 100000] [--keep] [--json]

Builds a scratch database (bench/scratch_db.py: the embedded server in a temporary directory, or
DATABASE_URL's server; `--keep` keeps it under <tmp>/cx-bench-backup for the next run with `--keep`),
generated inside PostgreSQL (generate_series; the build time is reported apart): `--cases` cases with
a ~600-character description and their intake interaction, from 20,000 customers; `--chunks` KB chunks
(10 per article, ~700 characters) with random 384-d vectors and their HNSW index. Then one backup to a
temporary file and one restore of it into a new database on the same server, whose row counts are
checked against the source's. The restore rebuilds every index, the HNSW one included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database, server_settings  # noqa: E402

from bot.runtime.backup import backup_database, restore_archive, tools_for  # noqa: E402
from bot.runtime.database import connect, resolve_dsn, with_database  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from db import admin  # noqa: E402

KEEP_DIR = "cx-bench-backup"
_TEXT = ("My card payment was declined twice at the same shop although my balance is fine and the card is "
         "not blocked in the app. ")
_COUNTED = ("cases", "case_interactions", "kb_articles", "kb_chunks")


def _build_sql(cases: int, chunks: int) -> list[str]:
    articles = max(1, chunks // 10)
    return [
        "SELECT setseed(0.15)",
        "SET maintenance_work_mem = '512MB'",
        "INSERT INTO customers (email) SELECT 'bench' || n || '@example.com' FROM generate_series(1, 20000) n",
        f"""
        INSERT INTO cases (customer_id, channel, external_id, subject, description, category, subcategory, status,
                           created_at, updated_at)
        SELECT cu.ids[1 + n % 20000], 'webhook', 'bench-' || n, 'Card declined #' || n,
               repeat('{_TEXT}', 5) || md5(n::text), 'cards', 'declined', 'new',
               now() - make_interval(mins => n), now() - make_interval(mins => n)
        FROM generate_series(1, {cases}) n, (SELECT array_agg(customer_id) AS ids FROM customers) cu
        """,
        """
        INSERT INTO case_interactions (case_id, actor_type, interaction_type, message, created_at)
        SELECT case_id, 'customer', 'webhook_in', description, created_at FROM cases
        """,
        f"""
        INSERT INTO kb_articles (source, source_id, title, content, status)
        SELECT 'confluence', 'bench-' || n, 'Article ' || n, 'body', 'published'
        FROM generate_series(1, {articles}) n
        """,
    ]


# The HNSW index is dropped while the chunks go in and built once after: a bulk build is several
# times faster than {chunks} inserts into the graph (setup time only; the restore builds it anyway).
_CHUNKS = """
INSERT INTO kb_chunks (article_id, ordinal, heading, content, content_hash, token_count, embedding)
SELECT a.article_id, o, 'Section ' || o, repeat('{text}', 6) || md5(a.article_id::text || o),
       md5(a.article_id::text || o), 150,
       (SELECT array_agg(random()::real - 0.5) FROM generate_series(1, 384) d WHERE d > o * 0)::vector
FROM kb_articles a, generate_series(0, 9) o  -- the WHERE above draws a vector per row
"""


async def build(dsn: str, cases: int, chunks: int) -> None:
    conn = await connect(dsn)
    try:
        for statement in _build_sql(cases, chunks):
            await conn.execute(statement)
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes "
                                   "WHERE tablename = 'kb_chunks' AND indexdef LIKE '%hnsw%'")
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await conn.execute("INSERT INTO embedding_space (provider, model, dimensions) "
                           "VALUES ('local', 'all-MiniLM-L6-v2', 384) ON CONFLICT DO NOTHING")
        await conn.execute(_CHUNKS.format(text=_TEXT))
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def counts(dsn: str) -> dict[str, int]:
    conn = await connect(dsn)
    try:
        found = {name: await conn.fetchval(f"SELECT count(*) FROM {name}") for name in _COUNTED}
        found["kb_chunk_vectors"] = await conn.fetchval(
            "SELECT count(*) FROM kb_chunks WHERE vector_dims(embedding) = 384")
        found["database_bytes"] = await conn.fetchval("SELECT pg_database_size(current_database())")
        return found
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = server_settings(args.keep, KEEP_DIR, None)
    data_dir = settings.cx_data_dir if settings.database_url is None else None
    name = f"cx_bench_backup_{args.cases}_{args.chunks}"
    spec = {"bench": "backup", "cases": args.cases, "chunks": args.chunks}
    async with scratch_database(name, spec, lambda dsn: build(dsn, args.cases, args.chunks), keep=args.keep,
                                keep_dir=KEEP_DIR, data_dir=data_dir) as scratch:
        source = await counts(scratch.dsn)
        with tempfile.TemporaryDirectory(prefix="cx-bench-backup-") as folder:
            made = await backup_database(settings, scratch.dsn, Path(folder) / "bench.dump")
            server = await resolve_dsn(settings)
            target_name = f"cx_bench_restore_{uuid.uuid4().hex[:8]}"
            conn = await connect(server)
            try:
                await admin.create_database(conn, target_name)
            finally:
                await conn.close()
            target = with_database(server, target_name)
            try:
                restore_seconds = await restore_archive(await tools_for(settings, target), target, made.path,
                                                        replace=False)
                restored = await counts(target)
            finally:
                conn = await connect(server)
                try:
                    await admin.drop_database(conn, target_name)
                finally:
                    await conn.close()
    same = all(restored[k] == source[k] for k in (*_COUNTED, "kb_chunk_vectors"))
    if not same:
        raise SystemExit(f"the restore differs from the source: {source} != {restored}")
    return {
        **{k: source[k] for k in (*_COUNTED, "kb_chunk_vectors")},
        "database_mb": round(source["database_bytes"] / 2**20, 1),
        "restored_database_mb": round(restored["database_bytes"] / 2**20, 1),
        "backup_seconds": round(made.seconds, 1),
        "dump_mb": round(made.size / 2**20, 1),
        "restore_seconds": round(restore_seconds, 1),
        "restored_counts_match": same,
        "build_seconds": round(scratch.seconds, 1),
        "database_reused": scratch.reused,
        "server": "DATABASE_URL" if settings.database_url is not None else "embedded",
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the source database (named after --cases, --chunks) and reuse it next time")
    args = parser.parse_args()
    if args.cases < 1 or args.chunks < 10:
        parser.error("need --cases >= 1 and --chunks >= 10")
    configure_logging("warning", "console")
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
