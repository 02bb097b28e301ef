"""Gmail sync through the real google-api-python-client against the fake Gmail API."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from functools import partial

import pytest

from bot.clients import gmail_service
from pipelines.adapters.gmail_mailbox import GmailMailbox
from pipelines.intake.gmail_sync import sync_mailbox
from tests.fakes.gmail import FakeGmail


def mail(n: int, sender: str = "dana@example.net", in_reply_to: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "support@example.com"
    m["Subject"] = f"Question {n}"
    m["Message-ID"] = f"<q{n}@mail.example.net>"
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    m.set_content(f"My top-up number {n} is still pending.")
    return bytes(m)


@pytest.fixture
async def gmail(make_settings, tmp_path):
    token = tmp_path / "token.json"
    token.write_text(json.dumps({
        "token": "test-token", "refresh_token": "r", "client_id": "c", "client_secret": "s",
        "expiry": "2099-01-01T00:00:00Z",
    }))
    async with FakeGmail() as fake:
        settings = make_settings(gmail_token_file=token, gmail_api_url=fake.url)
        yield fake, GmailMailbox(partial(gmail_service, settings), "support@example.com")


async def case_count(pool) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM cases")


async def test_first_sync_takes_the_inbox_then_follows_history(pool, gmail):
    fake, mailbox = gmail
    for n in range(3):
        fake.add_message(mail(n))
    first = await sync_mailbox(pool, mailbox)
    assert first.full_sync and first.outcomes == {"created": 3}
    assert await case_count(pool) == 3

    fake.add_message(mail(3))
    fake.add_message(mail(4, in_reply_to="<q0@mail.example.net>"))
    second = await sync_mailbox(pool, mailbox)
    assert not second.full_sync and second.outcomes == {"created": 1, "appended": 1}
    assert await case_count(pool) == 4
    assert fake.requests_to("/gmail/v1/users/me/history"), "the second run used history.list"

    third = await sync_mailbox(pool, mailbox)
    assert third.outcomes == {}


async def test_our_own_sent_mail_and_auto_replies_make_no_case(pool, gmail):
    fake, mailbox = gmail
    fake.add_message(mail(1, sender="support@example.com"))
    report = await sync_mailbox(pool, mailbox)
    assert report.outcomes == {"skipped": 1}
    assert await case_count(pool) == 0


async def test_two_syncs_seeing_the_same_message_make_one_case(pool, gmail):
    fake, mailbox = gmail
    fake.add_message(mail(7))
    reports = await asyncio.gather(sync_mailbox(pool, mailbox), sync_mailbox(pool, mailbox))
    assert await case_count(pool) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM gmail_messages_seen") == 1
        assert await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'case.triage'") == 1
    created = sum(r.outcomes.get("created", 0) for r in reports)
    assert created == 1


async def test_expired_history_falls_back_to_a_bounded_full_sync(pool, gmail):
    fake, mailbox = gmail
    fake.add_message(mail(1))
    await sync_mailbox(pool, mailbox)
    fake.add_message(mail(2))
    fake.oldest_history_id = fake.history_id + 1  # everything we knew is gone from Gmail's history
    report = await sync_mailbox(pool, mailbox)
    assert report.full_sync and report.outcomes == {"created": 1}
    assert await case_count(pool) == 2
