"""Sending through the real google-api-python-client against the fake Gmail API, and finding what was sent:
what a retried send job relies on to mail the customer exactly once."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from googleapiclient.errors import HttpError

from pipelines.adapters.gmail_mailbox import AnswerLost

SEND = "/gmail/v1/users/me/messages/send"
LIST = "/gmail/v1/users/me/messages"


def question() -> bytes:
    m = EmailMessage()
    m["From"] = "dana@example.net"
    m["To"] = "support@example.com"
    m["Subject"] = "Top-up pending"
    m["Message-ID"] = "<q1@mail.example.net>"
    m.set_content("My top-up is still pending.")
    return bytes(m)


def reply(message_id: str = "<r1.case42@cx.example.com>") -> bytes:
    m = EmailMessage()
    m["From"] = "support@example.com"
    m["To"] = "dana@example.net"
    m["Subject"] = "Re: Top-up pending"
    m["Message-ID"] = message_id
    m["In-Reply-To"] = "<q1@mail.example.net>"
    m["References"] = "<q1@mail.example.net>"
    m.set_content("Your top-up went through this morning.")
    return bytes(m)


async def test_send_in_a_thread_keeps_the_thread_and_the_headers(gmail):
    fake, mailbox = gmail
    thread = fake.add_message(question())
    raw = reply()

    sent_id = await mailbox.send(raw, thread)

    (sent,) = fake.sent
    assert sent.id == sent_id and sent.thread_id == thread
    assert sent.raw == raw
    assert sent.message["Message-ID"] == "<r1.case42@cx.example.com>"
    assert sent.message["In-Reply-To"] == sent.message["References"] == "<q1@mail.example.net>"
    assert sent.message["Subject"] == "Re: Top-up pending"
    (request,) = fake.requests_to(SEND, "POST")
    assert request.json["threadId"] == thread
    assert base64.urlsafe_b64decode(request.json["raw"] + "==") == raw
    assert fake.messages[sent_id].label_ids == ["SENT"]


async def test_send_without_a_thread_leaves_thread_id_out(gmail):
    fake, mailbox = gmail
    sent_id = await mailbox.send(reply(), None)
    (request,) = fake.requests_to(SEND, "POST")
    assert "threadId" not in request.json
    assert [s.id for s in fake.sent] == [sent_id]


async def test_find_sent_by_message_id_with_or_without_brackets(gmail):
    fake, mailbox = gmail
    fake.add_message(question())
    sent_id = await mailbox.send(reply(), None)

    assert await mailbox.find_sent("<r1.case42@cx.example.com>") == sent_id
    assert await mailbox.find_sent("r1.case42@cx.example.com") == sent_id
    assert await mailbox.find_sent("<unknown@cx.example.com>") is None
    queries = [r.query for r in fake.requests_to(LIST, "GET")]
    assert queries[0]["q"] == "rfc822msgid:r1.case42@cx.example.com"
    assert queries[0]["includeSpamTrash"] == "false"


async def test_the_fake_matches_message_ids_loosely(gmail):
    fake, mailbox = gmail
    stored = fake.add_message(reply(message_id="R2.Case42@CX.example.com"))  # no brackets, mixed case
    assert await mailbox.find_sent("<r2.case42@cx.example.com>") == stored
    assert await mailbox.find_sent("r2.CASE42@cx.example.com") == stored


@pytest.mark.parametrize("code", [500, None], ids=["error-500", "connection-dropped"])
async def test_a_send_whose_answer_was_lost_is_found_and_not_sent_twice(gmail, code):
    fake, mailbox = gmail
    thread = fake.add_message(question())
    fake.fail_after_send_next(code=code)

    with pytest.raises((HttpError, AnswerLost)):
        await mailbox.send(reply(), thread)

    assert len(fake.requests_to(SEND, "POST")) == 1, "neither the client nor httplib2 sent it again"
    (sent,) = fake.sent
    assert await mailbox.find_sent("<r1.case42@cx.example.com>") == sent.id
    assert sent.thread_id == thread


@pytest.mark.parametrize("code", [500, 503, 429])
async def test_send_does_not_retry_on_server_errors(gmail, code):
    fake, mailbox = gmail
    fake.fail_next(code)

    with pytest.raises(HttpError) as failed:
        await mailbox.send(reply(), None)

    assert failed.value.resp.status == code
    assert len(fake.requests_to(SEND, "POST")) == 1
    assert fake.sent == []
    assert await mailbox.find_sent("<r1.case42@cx.example.com>") is None
