"""The fakes in tests/fakes, driven by the real SDKs the bot uses, so the fakes stay honest."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any

import anthropic
import numpy as np
import openai
import pytest
from anthropic.types import MessageParam, TextBlock, TextBlockParam, ToolUseBlock
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from jira import JIRA, JIRAError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gmail import FakeGmail
from tests.fakes.jira import FakeJira
from tests.fakes.openai import FakeOpenAI, embed
from tests.fakes.slack import FakeSlack

MODEL = "claude-haiku-4-5"  # the SDK warns that claude-sonnet-4-5 is deprecated
HI: list[MessageParam] = [{"role": "user", "content": "My refund has not arrived"}]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def gmail() -> AsyncIterator[FakeGmail]:
    async with FakeGmail() as fake:
        yield fake


@pytest.fixture
async def jira_fake() -> AsyncIterator[FakeJira]:
    async with FakeJira() as fake:
        yield fake


def web_client(slack: FakeSlack, token: str = "xoxb-test") -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.url + "/api/")


# ---- Slack -----------------------------------------------------------------------------------------------------


async def test_slack_post_and_update_are_recorded(slack: FakeSlack) -> None:
    client = web_client(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Ticket #1*"}}]
    first = await client.chat_postMessage(channel="C0SUPPORT", text="Ticket #1", blocks=blocks)
    reply = await client.chat_postMessage(channel="C0SUPPORT", text="on it", thread_ts=first["ts"])
    await client.chat_update(channel="C0SUPPORT", ts=first["ts"], text="Ticket #1 (closed)")

    assert first["ts"] == "1700000000.000100"
    assert float(reply["ts"]) > float(first["ts"])
    assert [m["text"] for m in slack.messages] == ["Ticket #1 (closed)", "on it"]
    assert slack.messages[0]["blocks"] == blocks and slack.messages[0]["edited"] is not None
    assert slack.messages[1]["thread_ts"] == first["ts"]
    posted = slack.calls("chat.postMessage")
    assert len(posted) == 2 and posted[0].json["channel"] == "C0SUPPORT"
    assert posted[0].header("Authorization") == "Bearer xoxb-test"
    assert slack.calls("chat.update")[0].json["ts"] == first["ts"]


async def test_slack_ratelimit_retry_after_is_honoured(slack: FakeSlack) -> None:
    client = web_client(slack)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.ratelimit_next("chat.postMessage", retry_after=1)

    started = time.monotonic()
    await client.chat_postMessage(channel="C0SUPPORT", text="hello")

    assert time.monotonic() - started >= 1.0
    calls = slack.calls("chat.postMessage")
    assert len(calls) == 2 and calls[1].received_at - calls[0].received_at >= 1.0
    assert len(slack.messages) == 1


async def test_slack_scripted_errors_and_auth(slack: FakeSlack) -> None:
    slack.fail_next("conversations.members", error="channel_not_found")
    slack.ratelimit_next("users.info")
    slack.channel_members["C0SUPPORT"] = ["U1", "U2"]
    client = web_client(slack)

    with pytest.raises(SlackApiError) as failed:
        await client.conversations_members(channel="C0SUPPORT")
    assert failed.value.response["error"] == "channel_not_found"
    assert (await client.conversations_members(channel="C0SUPPORT"))["members"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as limited:  # no retry handler attached: the 429 surfaces
        await client.users_info(user="U0BOT")
    assert limited.value.response.status_code == 429
    assert (await client.users_info(user="U0BOT"))["user"]["is_bot"] is True
    for token, error in (("xoxb-invalid", "invalid_auth"), ("xapp-1-abc", "not_allowed_token_type")):
        with pytest.raises(SlackApiError) as refused:
            await web_client(slack, token).auth_test()
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as anonymous:
        await AsyncWebClient(base_url=slack.url + "/api/").auth_test()
    assert anonymous.value.response["error"] == "not_authed"


async def test_slack_views_reactions_and_file_upload(slack: FakeSlack) -> None:
    client = web_client(slack)
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Escalate"}, "blocks": []}
    opened = await client.views_open(trigger_id="123.456", view=view)
    await client.views_update(view_id=opened["view"]["id"], view={**view, "blocks": [{"type": "divider"}]})
    await client.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    await client.reactions_add(channel="C0SUPPORT", timestamp="1700000000.000100", name="eyes")
    await client.files_upload_v2(channel="C0SUPPORT", content="transcript", filename="t.txt", title="Transcript")

    assert slack.views[opened["view"]["id"]]["blocks"] == [{"type": "divider"}]
    assert slack.home_tabs["U1"]["type"] == "home"
    assert slack.reactions == [{"channel": "C0SUPPORT", "timestamp": "1700000000.000100", "name": "eyes"}]
    (uploaded,) = slack.files.values()
    assert uploaded["content"] == b"transcript" and uploaded["channel"] == "C0SUPPORT"


async def test_socket_mode_slash_command_is_acked_by_bolt(slack: FakeSlack) -> None:
    app = AsyncApp(client=web_client(slack))
    seen: list[dict[str, Any]] = []

    @app.command("/cx")
    async def on_cx(ack: Any, command: dict[str, Any], say: Any) -> None:
        await ack("On it")
        seen.append(command)
        await say(f"ticket opened: {command['text']}")

    handler = AsyncSocketModeHandler(app, app_token="xapp-1-test")
    await handler.connect_async()
    try:
        await slack.wait_connected()
        envelope_id = await slack.send_slash_command("/cx", "refund please", user_id="U0CUSTOMER")
        ack = await slack.wait_for_ack(envelope_id)

        assert ack["payload"] == {"text": "On it"}
        assert 0 <= ack["latency"] < 2
        assert seen[0]["user_id"] == "U0CUSTOMER"
        assert slack.calls("apps.connections.open")[0].header("Authorization") == "Bearer xapp-1-test"
        # say() runs after the ack, still inside the listener.
        (posted,) = await slack.wait_until(lambda: slack.messages)
        assert posted["text"] == "ticket opened: refund please"

        await slack.disconnect_clients()
        await slack.wait_until(lambda: slack.socket_connections == 2 and slack.connected == 1)
        assert len(slack.calls("apps.connections.open")) == 2
        second = await slack.send_slash_command("/cx", "still there?")
        assert (await slack.wait_for_ack(second))["payload"] == {"text": "On it"}
    finally:
        await handler.close_async()


# ---- Anthropic -------------------------------------------------------------------------------------------------


async def test_anthropic_tool_use_parses_with_usage(claude: FakeAnthropic) -> None:
    claude.script(claude.tool_use("classify", {"intent": "refund", "urgency": 2}))
    async with anthropic.AsyncAnthropic(api_key="test", base_url=claude.url, max_retries=0) as client:
        message = await client.messages.create(model=MODEL, max_tokens=200, messages=HI, system="You triage.")

    (block,) = message.content
    assert isinstance(block, ToolUseBlock)
    assert (block.name, block.input) == ("classify", {"intent": "refund", "urgency": 2})
    assert message.stop_reason == "tool_use" and message.model == MODEL and message.id.startswith("msg_")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    (request,) = claude.requests
    assert request.json["system"] == "You triage." and request.json["messages"] == HI


async def test_anthropic_529_then_success_via_sdk_retries(claude: FakeAnthropic) -> None:
    claude.script(claude.status(529), claude.text("Sorry about that."))
    async with anthropic.AsyncAnthropic(api_key="test", base_url=claude.url, max_retries=2) as client:
        message = await client.messages.create(model=MODEL, max_tokens=50, messages=HI)

    (block,) = message.content
    assert isinstance(block, TextBlock) and block.text == "Sorry about that."
    assert message.stop_reason == "end_turn"
    assert [r.header("x-stainless-retry-count") for r in claude.requests] == ["0", "1"]
    assert claude.pending == 0


async def test_anthropic_overloaded_exhausts_retries(claude: FakeAnthropic) -> None:
    claude.script(claude.status(529), claude.status(529))
    async with anthropic.AsyncAnthropic(api_key="test", base_url=claude.url, max_retries=1) as client:
        with pytest.raises(anthropic.APIStatusError) as failed:
            await client.messages.create(model=MODEL, max_tokens=50, messages=HI)
    assert failed.value.status_code == 529
    assert failed.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert len(claude.requests) == 2


async def test_anthropic_hang_raises_timeout(claude: FakeAnthropic) -> None:
    claude.script(claude.hang(5))
    async with anthropic.AsyncAnthropic(api_key="test", base_url=claude.url, max_retries=0, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model=MODEL, max_tokens=50, messages=HI)
    assert time.monotonic() - started < 2


async def test_anthropic_auth_models_and_prompt_cache(claude: FakeAnthropic) -> None:
    async with anthropic.AsyncAnthropic(api_key="bad-key", base_url=claude.url, max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            await bad.models.list()
    claude.default = claude.text("ok")
    system: list[TextBlockParam] = [{"type": "text", "text": "policy " * 2400, "cache_control": {"type": "ephemeral"}}]
    async with anthropic.AsyncAnthropic(api_key="test", base_url=claude.url, max_retries=0) as client:
        models = await client.models.list()
        first = await client.messages.create(model=MODEL, max_tokens=5, messages=HI, system=system)
        second = await client.messages.create(model=MODEL, max_tokens=5, messages=HI, system=system)

    assert MODEL in [m.id for m in models.data]
    assert (first.usage.cache_creation_input_tokens or 0) > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0


# ---- OpenAI ----------------------------------------------------------------------------------------------------


async def test_openai_embeddings_are_deterministic_with_requested_dimensions(oai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(api_key="test", base_url=oai.url + "/v1", max_retries=0) as client:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["refund", "shipping"])
        again = await client.embeddings.create(model="text-embedding-3-small", input="refund", encoding_format="float")
        small = await client.embeddings.create(model="text-embedding-3-small", input="refund", dimensions=256)

    refund, shipping = (np.array(d.embedding) for d in default.data)
    assert refund.shape == (1536,) and np.isclose(np.linalg.norm(refund), 1.0, atol=1e-5)
    assert np.allclose(refund, again.data[0].embedding) and np.allclose(refund, embed("refund"))
    assert not np.allclose(refund, shipping)
    assert len(small.data[0].embedding) == 256
    assert default.usage.prompt_tokens > 0 and default.usage.total_tokens == default.usage.prompt_tokens
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    assert [r.json.get("encoding_format") for r in oai.requests] == ["base64", "float", "base64"]
    assert oai.requests[2].json["dimensions"] == 256


async def test_openai_rate_limit_retried_and_auth(oai: FakeOpenAI) -> None:
    oai.script(oai.status(429))
    async with openai.AsyncOpenAI(api_key="test", base_url=oai.url + "/v1", max_retries=1) as client:
        result = await client.embeddings.create(model="text-embedding-3-small", input="hello")
        assert (await client.models.list()).data[0].id == "text-embedding-3-small"
    assert len(result.data[0].embedding) == 1536
    assert [r.header("x-stainless-retry-count") for r in oai.requests_to("/v1/embeddings")] == ["0", "1"]
    async with openai.AsyncOpenAI(api_key="bad-key", base_url=oai.url + "/v1", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.embeddings.create(model="text-embedding-3-small", input="hello")


# ---- Gmail -----------------------------------------------------------------------------------------------------


@pytest.fixture
def users(gmail: FakeGmail) -> Iterator[Any]:
    """The real client's users() resource; closing the service closes httplib2's sockets."""
    with build(
        "gmail",
        "v1",
        credentials=Credentials(token="test-token"),
        static_discovery=True,
        client_options={"api_endpoint": gmail.url},
    ) as service:
        yield service.users()


def mail(subject: str, message_id: str, in_reply_to: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ann@customer.test", "support@example.com", subject
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    message.set_content(f"Hello, about {subject}")
    return message.as_bytes()


async def test_gmail_profile_list_and_get_raw(gmail: FakeGmail, users: Any) -> None:
    first = gmail.add_message(mail("Refund", "<1@customer.test>"))
    reply = gmail.add_message(mail("Re: Refund", "<2@customer.test>", in_reply_to="<1@customer.test>"))
    gmail.add_message(mail("Read already", "<3@customer.test>"), label_ids=("INBOX",))

    profile = await asyncio.to_thread(users.getProfile(userId="me").execute)
    listed = await asyncio.to_thread(users.messages().list(userId="me", q="is:unread", maxResults=1).execute)
    got = await asyncio.to_thread(users.messages().get(userId="me", id=reply, format="raw").execute)

    assert profile == {
        "emailAddress": "support@example.com",
        "messagesTotal": 3,
        "threadsTotal": 2,
        "historyId": "1003",
    }
    assert listed["messages"] == [{"id": reply, "threadId": first}] and listed["nextPageToken"]
    assert got["threadId"] == first and got["labelIds"] == ["INBOX", "UNREAD"]
    assert base64.urlsafe_b64decode(got["raw"] + "==") == mail("Re: Refund", "<2@customer.test>", "<1@customer.test>")
    assert gmail.requests[0].path == "/gmail/v1/users/me/profile"
    assert gmail.requests[0].header("Authorization") == "Bearer test-token"


async def test_gmail_history_and_expired_start_is_404(gmail: FakeGmail, users: Any) -> None:
    start = gmail.history_id
    added = gmail.add_message(mail("Where is my order", "<9@customer.test>"))

    history = await asyncio.to_thread(
        users.history().list(userId="me", startHistoryId=str(start), historyTypes="messageAdded").execute
    )
    assert [h["messagesAdded"][0]["message"]["id"] for h in history["history"]] == [added]
    assert history["historyId"] == str(gmail.history_id)

    gmail.oldest_history_id = gmail.history_id
    with pytest.raises(HttpError) as expired:
        await asyncio.to_thread(users.history().list(userId="me", startHistoryId=str(start)).execute)
    assert expired.value.resp.status == 404
    assert gmail.requests[-1].query["startHistoryId"] == str(start)


async def test_gmail_send_and_modify(gmail: FakeGmail, users: Any) -> None:
    thread = gmail.add_message(mail("Refund", "<1@customer.test>"))
    outgoing = EmailMessage()
    outgoing["To"], outgoing["Subject"], outgoing["In-Reply-To"] = (
        "ann@customer.test",
        "Re: Refund",
        "<1@customer.test>",
    )
    outgoing.set_content("Your refund is on its way.")
    raw = base64.urlsafe_b64encode(outgoing.as_bytes()).decode()

    sent = await asyncio.to_thread(users.messages().send(userId="me", body={"raw": raw, "threadId": thread}).execute)
    await asyncio.to_thread(
        users.messages().modify(userId="me", id=thread, body={"removeLabelIds": ["UNREAD"]}).execute
    )

    assert sent["threadId"] == thread and sent["labelIds"] == ["SENT"]
    (stored,) = gmail.sent
    assert stored.id == sent["id"] and stored.message["Subject"] == "Re: Refund"
    assert stored.message.get_content().strip() == "Your refund is on its way."
    assert gmail.messages[thread].label_ids == ["INBOX"]
    assert "labelsRemoved" in gmail.history[-1]


# ---- Jira ------------------------------------------------------------------------------------------------------


async def test_jira_create_get_comment_and_search(jira_fake: FakeJira) -> None:
    def work() -> tuple[Any, Any, list[str]]:
        client = JIRA(server=jira_fake.url, basic_auth=("bot@example.com", "token"))
        try:
            created = client.create_issue(
                project="DEV", summary="Refund not received", description="Order 42", issuetype={"name": "Bug"}
            )
            client.create_issue(project="DEV", summary="Dark mode", issuetype={"name": "Task"})
            client.add_comment(created.key, "Customer chased again")
            fetched = client.issue(created.key)
            found = [i.key for i in client.search_issues('project = DEV AND summary ~ "refund"')]
            return created, fetched, found
        finally:
            client.close()

    created, fetched, found = await asyncio.to_thread(work)

    assert created.key == "DEV-1"
    assert fetched.fields.summary == "Refund not received" and fetched.fields.issuetype.name == "Bug"
    assert [c.body for c in fetched.fields.comment.comments] == ["Customer chased again"]
    assert found == ["DEV-1"]
    assert set(jira_fake.issues) == {"DEV-1", "DEV-2"}
    assert jira_fake.issues["DEV-1"]["fields"]["description"] == "Order 42"
    assert jira_fake.requests_to("/rest/api/2/issue", "POST")[0].json["fields"]["project"] == {"id": "10000"}


async def test_jira_bad_credentials_are_401(jira_fake: FakeJira) -> None:
    def work() -> None:
        client = JIRA(server=jira_fake.url, basic_auth=("bot@example.com", "wrong"), max_retries=0)
        try:
            client.myself()
        finally:
            client.close()

    with pytest.raises(JIRAError) as refused:
        await asyncio.to_thread(work)
    assert refused.value.status_code == 401
    assert not jira_fake.issues
