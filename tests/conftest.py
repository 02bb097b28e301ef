"""One embedded PostgreSQL per test session; every test gets a fresh database cloned from a migrated template.
Fixtures several test modules share live here too."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from bot.clients import gmail_service
from bot.runtime.database import start_embedded, with_database
from bot.settings import Settings, load_settings
from db.migrate import migrate
from db.pool import create_pool
from pipelines.adapters.gmail_mailbox import GmailMailbox
from tests.fakes.gmail import FakeGmail
from tests.fakes.slack import FakeSlack
from tests.support.cases import import_demo_kb
from tests.support.slack import REVIEWERS

TEMPLATE = "cx_template"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The admin URL of a server private to this test session."""
    return start_embedded(tmp_path_factory.mktemp("cx-data"))


@pytest.fixture(scope="session")
async def template_url(pg_admin_url: str) -> str:
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    url = with_database(pg_admin_url, TEMPLATE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def _scratch_database(admin_url: str, prefix: str, template: str | None = None) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    finally:
        await admin.close()
    yield with_database(admin_url, name)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def dsn(pg_admin_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    async for url in _scratch_database(pg_admin_url, "test", TEMPLATE):
        yield url


@pytest.fixture
async def empty_dsn(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with nothing in it, for migration tests."""
    async for url in _scratch_database(pg_admin_url, "empty"):
        yield url


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn, min_size=2, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
def make_settings(tmp_path: Path, dsn: str) -> Callable[..., Settings]:
    """Settings for a test: its own database and data dir, no .env, overrides as keywords."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "_env_file": None,
            "database_url": dsn,
            "cx_data_dir": tmp_path / "cx-data",
            "webhook_secret": "test-webhook-secret",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture(scope="session")
def minilm():
    """The local embedder (the `local` extra), loaded once for the session."""
    from pipelines.adapters.local_embedder import LocalEmbedder

    return LocalEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
async def demo_kb(pg_admin_url: str, template_url: str, minilm) -> AsyncIterator[asyncpg.Pool]:
    """A database of the module's own with samples/kb imported and embedded with MiniLM, once for its tests."""
    async for url in _scratch_database(pg_admin_url, "kbdemo", TEMPLATE):
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            report = await import_demo_kb(pool, minilm)
            assert report.changes == {"created": 24}
            yield pool
        finally:
            await pool.close()


@pytest.fixture
async def gmail(tmp_path):
    """The fake Gmail API and a GmailMailbox on it (the real google-api-python-client), as (fake, mailbox).
    test_fakes.py and test_gmail_sync.py have a `gmail` fixture of their own."""
    token = tmp_path / "token.json"
    token.write_text(
        json.dumps(
            {
                "token": "test-token",
                "refresh_token": "r",
                "client_id": "c",
                "client_secret": "s",
                "expiry": "2099-01-01T00:00:00Z",
            }
        )
    )
    async with FakeGmail() as fake:
        settings = load_settings(
            _env_file=None, cx_data_dir=tmp_path / "cx-data", gmail_token_file=token, gmail_api_url=fake.url
        )
        yield fake, GmailMailbox(partial(gmail_service, settings), "support@example.com")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack API, whose reviewer group (REVIEWERS) has two members, U0ALICE and U0BOB.
    Modules that need other users define a `slack` fixture of their own."""
    async with FakeSlack() as fake:
        fake.usergroup_members[REVIEWERS] = ["U0ALICE", "U0BOB"]
        yield fake
