"""Confluence → knowledge base with the real adapter against the fake Confluence Cloud API:
incremental by version, removed pages archived, rate limits waited out."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import kb as kb_db
from pipelines.adapters.confluence import ConfluenceClient
from pipelines.kb.confluence_sync import sync_space
from pipelines.kb.search import search
from tests.fakes.confluence import FakeConfluence

CONTENT = "/wiki/rest/api/content"
BODY = re.compile(rf"^{CONTENT}/(\d+)$")


@pytest.fixture
async def fake() -> AsyncIterator[FakeConfluence]:
    async with FakeConfluence(spaces=("KB", "OTHER")) as server:
        yield server


def body_fetches(fake: FakeConfluence) -> list[str]:
    return [m.group(1) for r in fake.requests if (m := BODY.match(r.path))]


def listings(fake: FakeConfluence) -> list[str]:
    return [r.query.get("start", "?") for r in fake.requests_to(CONTENT)]


def html(n: int, extra: str = "") -> str:
    return (f"<h1>Policy {n}</h1><p>Everything about codeword{n} and how refunds work.</p>"
            f"<h2>Details</h2><p>Step one for page {n}.{extra}</p><script>ignored()</script>")


async def articles(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT source_id, title, content, tags, url, status, updated_at, (metadata->>'version')::int AS version "
            "FROM kb_articles WHERE source = 'confluence'"
        )
    return {r["source_id"]: r for r in rows}


async def test_sync_is_incremental_archives_removed_pages_and_waits_out_rate_limits(pool, fake):
    ids = [fake.add_page("KB", f"Refund policy {n}", html(n), labels=[f"l{n % 3}", "faq"]) for n in range(120)]
    fake.add_page("OTHER", "Another space", "<p>not ours</p>")

    async with ConfluenceClient(fake.url, "bot@example.com", "token", page_size=50) as client:
        # first sync: everything is new
        first = await sync_space(pool, client, "KB")
        assert (first.pages, dict(first.changes), first.archived) == (120, {"created": 120}, 0)
        assert listings(fake) == ["0", "50", "100"]
        assert sorted(body_fetches(fake)) == sorted(ids)
        stored = await articles(pool)
        assert len(stored) == 120
        for n, page_id in enumerate(ids):
            row = stored[f"KB:{page_id}"]
            assert row["title"] == f"Refund policy {n}" and row["status"] == "published" and row["version"] == 1
            assert row["tags"] == [f"l{n % 3}", "faq"]
            assert row["url"] == f"{fake.url}/wiki/spaces/KB/pages/{page_id}/Refund+policy+{n}"
            assert f"codeword{n} " in row["content"] and "ignored()" not in row["content"] and "<p>" not in row["content"]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM kb_chunks WHERE embedding IS NULL") > 120

        # second sync: nothing changed, no bodies fetched
        fake.requests.clear()
        second = await sync_space(pool, client, "KB")
        assert (second.pages, dict(second.changes), second.archived) == (120, {"unchanged": 120}, 0)
        assert body_fetches(fake) == [] and listings(fake) == ["0", "50", "100"]
        assert {k: r["updated_at"] for k, r in (await articles(pool)).items()} == {
            k: r["updated_at"] for k, r in stored.items()}

        # two pages edited: only their bodies are fetched
        fake.update_page(ids[3], html=html(3, " Now with a new step."))
        fake.update_page(ids[77], html=html(77, " Also changed."), title="Refund policy seventy-seven")
        fake.requests.clear()
        third = await sync_space(pool, client, "KB")
        assert dict(third.changes) == {"updated": 2, "unchanged": 118} and third.archived == 0
        assert sorted(body_fetches(fake)) == sorted([ids[3], ids[77]])
        now = await articles(pool)
        assert "Now with a new step." in now[f"KB:{ids[3]}"]["content"] and now[f"KB:{ids[3]}"]["version"] == 2
        assert now[f"KB:{ids[77]}"]["title"] == "Refund policy seventy-seven"
        changed = {k for k in now if now[k]["updated_at"] != stored[k]["updated_at"]}
        assert changed == {f"KB:{ids[3]}", f"KB:{ids[77]}"}

        # one page removed: archived, and no longer found
        hits = await search(pool, None, "codeword42", 5)
        assert [h.url for h in hits] == [stored[f"KB:{ids[42]}"]["url"]]
        fake.remove_page(ids[42])
        fake.requests.clear()
        fourth = await sync_space(pool, client, "KB")
        assert (fourth.pages, dict(fourth.changes), fourth.archived) == (119, {"unchanged": 119}, 1)
        assert body_fetches(fake) == []
        now = await articles(pool)
        assert now[f"KB:{ids[42]}"]["status"] == "archived"
        assert sum(r["status"] == "published" for r in now.values()) == 119
        assert await search(pool, None, "codeword42", 5) == []
        assert await search(pool, None, "codeword43", 5) != []
        async with pool.acquire() as conn:
            published, _, _ = await kb_db.counts(conn)
        assert published == 119

        # a rate limit on the listing is waited out and the sync completes
        fake.rate_limit_next(1, retry_after="0")
        fake.update_page(ids[0], html=html(0, " Rate limited edit."))
        fake.requests.clear()
        fifth = await sync_space(pool, client, "KB")
        assert dict(fifth.changes) == {"updated": 1, "unchanged": 118} and fifth.archived == 0
        assert listings(fake) == ["0", "0", "50", "100"]
        assert [r.path for r in fake.requests[:1]] == [CONTENT]
        assert body_fetches(fake) == [ids[0]]

        # the removed page comes back: published again
        fake.add_page("KB", "Refund policy 42", html(42), labels=["l0", "faq"], page_id=ids[42])
        sixth = await sync_space(pool, client, "KB")
        assert sixth.pages == 120 and sixth.changes["updated"] == 1 and sixth.archived == 0
        assert (await articles(pool))[f"KB:{ids[42]}"]["status"] == "published"
        assert [h.title for h in await search(pool, None, "codeword42", 5)] == ["Refund policy 42"]

    # other spaces were never touched
    assert all(not k.startswith("OTHER:") for k in await articles(pool))


async def test_archiving_is_per_space(pool, fake):
    kb = fake.add_page("KB", "In KB", "<p>kb page</p>")
    other = fake.add_page("OTHER", "In OTHER", "<p>other page</p>")
    async with ConfluenceClient(fake.url, "bot@example.com", "token", page_size=50) as client:
        await sync_space(pool, client, "KB")
        await sync_space(pool, client, "OTHER")
        fake.remove_page(kb)
        report = await sync_space(pool, client, "OTHER")
        assert report.archived == 0
        report = await sync_space(pool, client, "KB")
        assert report.archived == 1
    stored = await articles(pool)
    assert stored[f"KB:{kb}"]["status"] == "archived" and stored[f"OTHER:{other}"]["status"] == "published"
