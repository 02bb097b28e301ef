"""`cx health-check`: is each dependency configured, and does it answer?"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from bot import clients
from bot.ai import embedding_model
from bot.runtime.database import DatabaseUnavailable, connect, resolve_dsn
from bot.settings import Settings
from db import admin
from db import health as db_health
from db.connection import Connection
from db.migrate import status as migration_status
from pipelines.triage.readiness import readiness

_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    configured: bool
    ok: bool | None  # None: not configured, so not tried
    detail: str
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _timed(name: str, probe: Callable[[], Awaitable[str]]) -> Check:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), _TIMEOUT)
    except Exception as exc:  # any failure of a probe is the answer we report
        reason = str(exc) or type(exc).__name__
        return Check(name, True, False, reason[:300], round((time.perf_counter() - started) * 1000, 1))
    return Check(name, True, True, detail, round((time.perf_counter() - started) * 1000, 1))


def _not_configured(name: str, hint: str) -> Check:
    return Check(name, False, None, f"not configured ({hint})")


async def _database_checks(settings: Settings) -> list[Check]:
    started = time.perf_counter()
    try:
        dsn = await resolve_dsn(settings)
        conn = await connect(dsn)
    except DatabaseUnavailable as exc:
        return [
            Check("database", True, False, str(exc)),
            Check("pgvector", True, False, "database unreachable"),
            Check("triage", True, False, "database unreachable"),
        ]
    try:
        facts = await db_health.ping(conn)
        pending = [m for m in await migration_status(conn) if m.applied_at is None]
        available = await admin.available_vector_version(conn)
        triage = await _triage_check(conn, settings) if not pending else Check(
            "triage", False, None, "not checked until the schema is migrated (cx db migrate)")
    finally:
        await conn.close()
    where = "embedded" if settings.database_url is None else "DATABASE_URL"
    migrations = f", {len(pending)} migrations pending (cx db migrate)" if pending else ""
    database = Check(
        "database",
        True,
        True,
        f"PostgreSQL {facts.server_version} ({where}){migrations}",
        round((time.perf_counter() - started) * 1000, 1),
    )
    if facts.pgvector_version:
        vector = Check("pgvector", True, True, f"vector {facts.pgvector_version}")
    elif available:
        vector = Check("pgvector", True, True, f"vector {available} available, created by cx db migrate")
    else:
        vector = Check("pgvector", True, False, "the server has no pgvector extension")
    return [database, vector, triage]


async def _triage_check(conn: Connection, settings: Settings) -> Check:
    """Configured when some triager can answer; with no model and no key it is "not configured"
    (every case goes to a person), like any other part not set up yet."""
    ready = await readiness(conn, claude=settings.anthropic_api_key is not None,
                            embedding_model=embedding_model(settings))
    if not ready.ready:
        return Check("triage", False, None, ready.detail)
    return Check("triage", True, True, ready.detail)


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Awaitable[Check | list[Check]]] = []

    slack = clients.slack_client(settings)
    anthropic = clients.anthropic_client(settings)
    openai = clients.openai_client(settings)

    async def slack_probe() -> str:
        assert slack is not None
        answer = await slack.auth_test()
        return f"team {answer.get('team')} as {answer.get('user')}"

    async def anthropic_probe() -> str:
        assert anthropic is not None
        page = await anthropic.models.list(limit=20)
        ids = [m.id for m in page.data]
        return f"{len(ids)} models; {settings.anthropic_model} " + (
            "listed" if any(i.startswith(settings.anthropic_model) for i in ids) else "not listed"
        )

    async def openai_probe() -> str:
        assert openai is not None
        await openai.models.list()
        return f"embeddings with {settings.openai_embedding_model}"

    async def gmail_probe() -> str:
        def profile() -> str:
            service = clients.gmail_service(settings)
            assert service is not None  # probed only when GMAIL_TOKEN_FILE is set
            answer = service.users().getProfile(userId="me").execute()
            return f"{answer['emailAddress']} (history {answer['historyId']})"

        return await asyncio.to_thread(profile)

    async def jira_probe() -> str:
        def info() -> str:
            jira = clients.jira_client(settings)
            assert jira is not None  # probed only when all three Jira settings are set
            me = jira.myself()  # serverInfo answers anonymously; this proves the credentials
            answer = jira.server_info()
            return f"{answer.get('serverTitle', 'Jira')} as {me.get('displayName', me.get('emailAddress'))}"

        return await asyncio.to_thread(info)

    async def one(check: Check) -> Check:
        return check

    checks.append(_database_checks(settings))
    checks.append(_timed("slack", slack_probe) if slack else one(_not_configured("slack", "SLACK_BOT_TOKEN")))
    checks.append(
        _timed("anthropic", anthropic_probe)
        if anthropic
        else one(_not_configured("anthropic", "ANTHROPIC_API_KEY; local triage, extractive drafts"))
    )
    checks.append(
        _timed("openai", openai_probe)
        if openai
        else one(_not_configured("openai", "OPENAI_API_KEY; local or full-text search"))
    )
    checks.append(
        _timed("gmail", gmail_probe)
        if settings.gmail_token_file
        else one(_not_configured("gmail", "GMAIL_TOKEN_FILE"))
    )
    checks.append(
        _timed("jira", jira_probe)
        if settings.jira_url and settings.jira_email and settings.jira_api_token
        else one(_not_configured("jira", "JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN"))
    )
    results: list[Check] = []
    for outcome in await asyncio.gather(*checks):
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    for client in (anthropic, openai):
        if client is not None:
            await client.close()
    return results
