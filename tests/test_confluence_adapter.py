"""The Confluence adapter against the fake Confluence Cloud API."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from pipelines.adapters.confluence import ConfluenceClient, ConfluenceError
from pipelines.ports import KnowledgeSource
from tests.fakes.confluence import FakeConfluence

CONTENT = "/wiki/rest/api/content"


@pytest.fixture
async def fake() -> AsyncIterator[FakeConfluence]:
    async with FakeConfluence(spaces=("KB", "EMPTY")) as server:
        yield server


def client(fake: FakeConfluence, **kwargs: object) -> ConfluenceClient:
    return ConfluenceClient(fake.url, "bot@example.com", "token", **kwargs)  # type: ignore[arg-type]


def gaps(fake: FakeConfluence) -> list[float]:
    times = [r.received_at for r in fake.requests]
    return [b - a for a, b in zip(times, times[1:])]


async def test_listing_follows_every_page_of_results(fake: FakeConfluence):
    ids = [
        fake.add_page("KB", f"Refund policy {n}", f"<p>body {n}</p>", labels=[f"l{n % 3}", "faq"]) for n in range(120)
    ]
    fake.add_page("OTHER", "Not in KB", "<p>x</p>")
    fake.update_page(ids[7], html="<p>new</p>")
    fake.update_page(ids[7], title="Refund policy seven")

    source: KnowledgeSource
    async with client(fake, page_size=50) as source:
        pages = await source.list_pages("KB")

    assert [p.id for p in pages] == ids
    by_id = {p.id: p for p in pages}
    assert by_id[ids[7]].version == 3 and by_id[ids[7]].title == "Refund policy seven"
    assert by_id[ids[0]].version == 1 and by_id[ids[0]].labels == ["l0", "faq"]
    assert by_id[ids[119]].labels == ["l2", "faq"]
    assert by_id[ids[1]].url == f"{fake.url}/wiki/spaces/KB/pages/{ids[1]}/Refund+policy+1"
    listed = fake.requests_to(CONTENT)
    assert [(r.query["start"], r.query["limit"]) for r in listed] == [("0", "50"), ("50", "50"), ("100", "50")]
    first = listed[0]
    assert first.query["spaceKey"] == "KB" and first.query["type"] == "page" and first.query["status"] == "current"
    assert set(first.query["expand"].split(",")) == {"version", "metadata.labels"}
    assert first.header("Accept") == "application/json"
    assert first.header("Authorization") == "Basic " + base64.b64encode(b"bot@example.com:token").decode()


async def test_listing_follows_next_when_the_server_caps_the_limit(fake: FakeConfluence):
    ids = [fake.add_page("KB", f"Page {n}", "<p/>") for n in range(250)]
    async with client(fake, page_size=500) as source:
        pages = await source.list_pages("KB")
    assert sorted(p.id for p in pages) == sorted(ids) and len(pages) == 250
    assert [r.query["start"] for r in fake.requests_to(CONTENT)] == ["0", "100", "200"]


async def test_removed_pages_drop_out_and_an_empty_space_lists_nothing(fake: FakeConfluence):
    keep = fake.add_page("KB", "Keep", "<p>k</p>", labels=["a"])
    gone = fake.add_page("KB", "Gone", "<p>g</p>")
    fake.remove_page(gone)
    async with client(fake) as source:
        assert [(p.id, p.title, p.labels) for p in await source.list_pages("KB")] == [(keep, "Keep", ["a"])]
        assert await source.list_pages("EMPTY") == []
    assert len(fake.requests_to(CONTENT)) == 2


async def test_urls_fall_back_to_the_configured_base_without_links_base(fake: FakeConfluence):
    fake.send_links_base = False
    ids = [fake.add_page("KB", f"P{n}", "<p/>") for n in range(3)]
    async with client(fake, page_size=2) as source:
        pages = await source.list_pages("KB")
    assert [p.id for p in pages] == ids
    assert pages[2].url == f"{fake.url}/wiki/spaces/KB/pages/{ids[2]}/P2"
    assert len(fake.requests_to(CONTENT)) == 2


async def test_page_html_returns_the_storage_body(fake: FakeConfluence):
    page_id = fake.add_page("KB", "Shipping", '<h1>Shipping</h1><ac:structured-macro ac:name="info"/>', page_id="4242")
    async with client(fake) as source:
        assert await source.page_html(page_id) == '<h1>Shipping</h1><ac:structured-macro ac:name="info"/>'
        fake.update_page(page_id, html="<p>v2</p>")
        assert await source.page_html(page_id) == "<p>v2</p>"
    got = fake.requests_to(f"{CONTENT}/4242")
    assert len(got) == 2 and got[0].query == {"expand": "body.storage"}


async def test_rate_limit_is_retried_after_the_servers_retry_after(fake: FakeConfluence):
    page_id = fake.add_page("KB", "A", "<p>a</p>")
    fake.rate_limit_next(2, retry_after="0.25")
    async with client(fake) as source:
        pages = await source.list_pages("KB")
    assert [p.id for p in pages] == [page_id]
    assert len(fake.requests_to(CONTENT)) == 3
    assert all(gap >= 0.25 for gap in gaps(fake)), gaps(fake)


async def test_retry_after_is_capped_by_max_wait(fake: FakeConfluence):
    fake.add_page("KB", "A", "<p>a</p>", page_id="1")
    fake.rate_limit_next(1, retry_after="3600")
    started = time.monotonic()
    async with client(fake, max_wait=0.05) as source:
        assert await source.page_html("1") == "<p>a</p>"
    assert time.monotonic() - started < 5
    assert len(fake.requests_to(f"{CONTENT}/1")) == 2


async def test_503_without_retry_after_backs_off_one_second_first(fake: FakeConfluence):
    fake.add_page("KB", "A", "<p>a</p>", page_id="1")
    fake.fail_next(503, retry_after=None)
    async with client(fake) as source:
        assert await source.page_html("1") == "<p>a</p>"
    assert len(fake.requests) == 2
    assert 1.0 <= gaps(fake)[0] < 3


async def test_too_many_rate_limits_raise(fake: FakeConfluence):
    fake.add_page("KB", "A", "<p>a</p>")
    fake.rate_limit_next(10)
    async with client(fake, max_retries=2) as source:
        with pytest.raises(ConfluenceError) as caught:
            await source.list_pages("KB")
    assert caught.value.status == 429
    assert "after 2 retries" in str(caught.value)
    assert len(fake.requests_to(CONTENT)) == 3  # one try and two retries


async def test_bad_credentials_raise_401_without_retrying(fake: FakeConfluence):
    fake.add_page("KB", "A", "<p>a</p>")
    async with ConfluenceClient(fake.url, "bot@example.com", "wrong") as source:
        with pytest.raises(ConfluenceError) as caught:
            await source.list_pages("KB")
    assert caught.value.status == 401
    assert "email and API token" in caught.value.message
    assert len(fake.requests) == 1


async def test_unknown_space_and_page_raise_404(fake: FakeConfluence):
    async with client(fake) as source:
        with pytest.raises(ConfluenceError) as space:
            await source.list_pages("NOPE")
        with pytest.raises(ConfluenceError) as page:
            await source.page_html("999")
    assert space.value.status == 404 and "space 'NOPE' does not exist" in space.value.message
    assert page.value.status == 404 and "page 999 does not exist" in page.value.message
    assert len(fake.requests) == 2


async def test_a_callers_session_is_used_and_left_open(fake: FakeConfluence):
    fake.add_page("KB", "A", "<p>a</p>", page_id="1")
    async with aiohttp.ClientSession() as session:
        async with client(fake, session=session) as source:
            assert await source.page_html("1") == "<p>a</p>"
        assert not session.closed
