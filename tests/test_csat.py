"""CSAT: signed rating links (property tests), the rating line in replies only with PUBLIC_URL, the
GET /csat page through a real aiohttp server, and the score on the review card and in `/case`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.deps import Deps
from bot.runtime.metrics import Metrics
from bot.services.commands import case_detail
from bot.services.review import card_from_facts
from bot.settings import SettingsError
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from db import drafts as drafts_db
from db.pool import transaction
from handlers.case_views import case_reply
from handlers.review_card import review_card_blocks
from pipelines.lifecycle.csat_token import InvalidToken, Rejection, sign, verify
from pipelines.replies.outbox import queue_reply
from pipelines.review import decisions as review
from pipelines.review import lookup
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import review_case

KEY = "csat-secret"
PUBLIC = "https://help.northwind.example"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# ---- tokens -----------------------------------------------------------------------------------------------

uuids = st.uuids()
moments = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
lifetimes = st.integers(min_value=1, max_value=400 * 86400)


@settings(deadline=None)  # a busy CI machine is no reason to fail
@given(uuids, moments, lifetimes)
def test_a_token_names_its_case_until_it_expires(case_id, now, seconds):
    expires = now + timedelta(seconds=seconds)
    token = sign(case_id, expires, KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    claim = verify(token, KEY, now)
    assert claim.case_id == case_id and claim.expires_at == expires.replace(microsecond=0)
    with pytest.raises(InvalidToken) as expired:
        verify(token, KEY, claim.expires_at)
    assert expired.value.why is Rejection.EXPIRED


@settings(deadline=None)  # a busy CI machine is no reason to fail
@given(uuids, st.integers(min_value=0, max_value=42), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_any_changed_character_is_rejected(case_id, position, replacement):
    token = sign(case_id, NOW + timedelta(days=14), KEY)
    tampered = token[:position] + replacement + token[position + 1:]
    if tampered == token:
        return
    with pytest.raises(InvalidToken) as rejected:
        verify(tampered, KEY, NOW)
    assert rejected.value.why in (Rejection.FORGED, Rejection.MALFORMED)


@settings(deadline=None)  # a busy CI machine is no reason to fail
@given(uuids, st.text(min_size=1, max_size=40))
def test_another_key_or_junk_is_rejected(case_id, junk):
    token = sign(case_id, NOW + timedelta(days=1), KEY)
    with pytest.raises(InvalidToken):
        verify(token, KEY + "x", NOW)
    with pytest.raises(InvalidToken):
        verify(junk, KEY, NOW)
    with pytest.raises(InvalidToken):
        verify(token + "A", KEY, NOW)


# ---- the rating line ------------------------------------------------------------------------------------


async def queued_body(pool, deps: Deps) -> tuple[UUID, str]:
    case_id, draft_id = await review_case(pool)
    async with transaction(pool) as conn:
        case = await drafts_db.load_case(conn, case_id)
        assert case is not None
        await queue_reply(conn, case, draft_id, "Hi Mia, here is the answer.", deps.sender, approved_by="U0ALICE")
    body: str = await pool.fetchval("SELECT body FROM reply_outbox WHERE case_id = $1", case_id)
    return case_id, body


async def test_with_public_url_every_reply_ends_with_five_signed_rating_links(pool, make_settings):
    deps = Deps(make_settings(public_url=PUBLIC + "/", csat_secret=KEY, csat_link_days=14), pool, Metrics())
    case_id, body = await queued_body(pool, deps)
    last = body.rstrip("\n").splitlines()[-1]
    links = re.findall(r"https://help\.northwind\.example/csat/([A-Za-z0-9_-]+)\?score=(\d)", last)
    assert [int(n) for _, n in links] == [1, 2, 3, 4, 5]
    (token,) = {t for t, _ in links}
    claim = verify(token, KEY, datetime.now(UTC))
    assert claim.case_id == case_id
    assert timedelta(days=13, hours=23) < claim.expires_at - datetime.now(UTC) <= timedelta(days=14)
    assert "Your case reference: CX-" in body.splitlines()[-2]


async def test_without_public_url_there_is_no_rating_line(pool, make_settings):
    deps = Deps(make_settings(csat_secret=KEY), pool, Metrics())
    _, body = await queued_body(pool, deps)
    assert "/csat/" not in body and body.rstrip().splitlines()[-1].startswith("Your case reference")


async def test_the_webhook_secret_signs_when_there_is_no_csat_secret(pool, make_settings):
    deps = Deps(make_settings(public_url=PUBLIC), pool, Metrics())
    _, body = await queued_body(pool, deps)
    token = re.search(r"/csat/([A-Za-z0-9_-]+)\?", body)
    assert token and verify(token[1], "test-webhook-secret", datetime.now(UTC))


def test_public_url_without_any_secret_is_a_settings_error(make_settings):
    with pytest.raises(SettingsError) as error:
        make_settings(public_url=PUBLIC, webhook_secret=None)
    assert "CSAT_SECRET" in str(error.value) and "WEBHOOK_SECRET" in str(error.value)
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        make_settings(public_url="help.northwind.example")


# ---- GET /csat/{token} ----------------------------------------------------------------------------------


@pytest.fixture
async def web(pool, make_settings):
    deps = Deps(make_settings(public_url=PUBLIC, csat_secret=KEY), pool, Metrics())
    client = TestClient(TestServer(build_web_app(deps, RuntimeStatus(roles=["web"]))))
    await client.start_server()
    yield client
    await client.close()


async def rated(pool, case_id: UUID) -> tuple[int | None, list[str]]:
    score = await pool.fetchval("SELECT csat FROM cases WHERE case_id = $1", case_id)
    rows = await pool.fetch("SELECT message FROM case_interactions WHERE case_id = $1 AND interaction_type = 'csat' "
                            "ORDER BY created_at", case_id)
    return score, [r["message"] for r in rows]


async def test_a_click_stores_the_score_and_thanks_the_customer(pool, web):
    case_id, _ = await review_case(pool)
    token = sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY)
    response = await web.get(f"/csat/{token}?score=4")
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert "Thank you" in page and "4 out of 5" in page
    assert response.headers["Cache-Control"] == "no-store"
    assert await rated(pool, case_id) == (4, ["rated 4/5"])
    assert await pool.fetchval("SELECT csat_at FROM cases WHERE case_id = $1", case_id) is not None

    again = await web.get(f"/csat/{token}?score=4")  # the same click twice: one effect
    assert again.status == 200 and await rated(pool, case_id) == (4, ["rated 4/5"])

    changed = await web.get(f"/csat/{token}?score=2")
    assert changed.status == 200 and "2 out of 5" in await changed.text()
    assert await rated(pool, case_id) == (2, ["rated 4/5", "rated 2/5 (was 4/5)"])


@pytest.mark.parametrize(
    ("token_of", "query", "status"),
    [
        (lambda case_id: sign(case_id, datetime.now(UTC) - timedelta(seconds=1), KEY), "score=5", 410),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), "another key"), "score=5", 400),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY)[:-1] + "-", "score=5", 400),
        (lambda case_id: "not-a-token", "score=5", 400),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY), "score=0", 400),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY), "score=6", 400),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY), "score=%EF%BC%94", 400),
        (lambda case_id: sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY), "", 400),
        (lambda case_id: sign(uuid4(), datetime.now(UTC) + timedelta(days=1), KEY), "score=5", 404),
    ],
    ids=["expired", "forged", "tampered", "junk", "score 0", "score 6", "fullwidth digit", "no score", "no case"],
)
async def test_a_bad_link_gets_a_plain_page_and_changes_nothing(pool, web, token_of, query, status):
    case_id, _ = await review_case(pool)
    response = await web.get(f"/csat/{token_of(case_id)}?{query}")
    page = await response.text()
    assert response.status == status and response.content_type == "text/html"
    assert page.startswith("<!doctype html>") and "Nothing was recorded" in page and "Traceback" not in page
    assert await rated(pool, case_id) == (None, [])


async def test_head_requests_change_nothing(pool, web):
    case_id, _ = await review_case(pool)
    token = sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY)
    response = await web.head(f"/csat/{token}?score=5")
    assert response.status == 405 and await rated(pool, case_id) == (None, [])


# ---- the score in Slack ---------------------------------------------------------------------------------


async def test_the_score_shows_on_the_card_and_in_case(pool, web):
    case_id, _ = await review_case(pool)
    token = sign(case_id, datetime.now(UTC) + timedelta(days=1), KEY)
    assert (await web.get(f"/csat/{token}?score=5")).status == 200
    facts = await review.card_facts(pool, case_id)
    assert facts is not None and facts.csat == 5
    blocks = review_card_blocks(card_from_facts(facts))
    assert_valid_blocks(blocks, max_blocks=50)
    (status,) = [b for b in blocks if b["block_id"] == "card_status"]
    assert "CSAT" in status["elements"][0]["text"] and "5/5" in status["elements"][0]["text"]

    found = await lookup.by_id(pool, case_id)
    assert found is not None
    reply = case_reply(case_detail(found))
    assert_valid_blocks(reply.blocks, max_blocks=50)
    (facts_block,) = [b for b in reply.blocks if b["block_id"] == "case_facts"]
    assert any("*Satisfaction*" in f["text"] and "5/5" in f["text"] for f in facts_block["fields"])
