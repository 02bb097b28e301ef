"""Property tests of everything the web role takes from outside: /webhooks/intake, /webhooks/metrics,
/csat/{token} and /slack/events (HTTP mode), in-process against the real database. Whatever arrives:
no 5xx, a JSON error for every 4xx of ours (HTML on the CSAT page, which browsers read), and nothing
written when a request is refused."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from bot.clients import slack_client
from bot.deps import Deps, with_slack
from bot.runtime.metrics import Metrics
from bot.slack.app import build_slack_app, http_route
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from bot.web.webhooks import MAX_BODY
from pipelines.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_SECONDS, sign, signed_headers, verify
from tests.fakes.slack import FakeSlack
from tests.support.rows import table_counts
from tests.support.triage import TAXONOMY

SECRET = "test-webhook-secret"
SLACK_SECRET = "slack-signing-secret"
CSAT_KEY = "csat-secret"
WEBHOOKS = ("/webhooks/intake", "/webhooks/metrics")
GOOD_CASE = {"customer_email": "ann@example.com", "description": "My card has not arrived."}
GOOD_POINTS = {"metrics": [{"name": "api_error_rate", "value": 1.5}]}

# Reproducible in CI: the same examples every run; no deadline, since a busy machine is no bug.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Text a browser, a form builder or an attacker may send: lone surrogates, NUL and control
# characters, right-to-left overrides, combining marks, zero-width characters, non-BMP.
EDGE_CHARS = ["\x00", "\ud800", "\udfff", "\u202e", "\u200f", "\u0301", "\u200b", "\ufeff", "\U0001f600",
              "\r\n", "\\", '"', "\x7f", "\uffff", "\u2028"]
edge_text = st.lists(st.one_of(st.sampled_from(EDGE_CHARS), st.text(max_size=8)), max_size=12).map("".join)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=False, allow_infinity=False), edge_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(edge_text, inner, max_size=4)), max_leaves=12)


def surrogate_safe_json(value: Any) -> bytes:
    """JSON as bytes; lone surrogates become \\udxxx escapes, which json.loads turns back into them."""
    return json.dumps(value, ensure_ascii=True).encode()


@pytest.fixture
async def app_deps(pool, make_settings):
    async with FakeSlack() as slack:
        # No rate limit: a 429 would be a clean refusal that hides what the body does.
        settings = make_settings(public_url="https://help.example", csat_secret=CSAT_KEY, webhook_rate_per_minute=0,
                                 slack_bot_token="xoxb-test", slack_api_url=slack.url + "/api/",
                                 slack_review_channel="C0REVIEW")
        client = slack_client(settings)
        assert client is not None
        deps = with_slack(Deps(settings, pool, Metrics(), taxonomy=TAXONOMY), client)
        yield deps, slack


@pytest.fixture
async def client(app_deps):
    deps, _ = app_deps
    assert deps.services is not None
    events = http_route(build_slack_app(deps.services, deps.slack, SLACK_SECRET))
    client = TestClient(TestServer(build_web_app(deps, RuntimeStatus(roles=["web"]), events)))
    await client.start_server()
    yield client
    await client.close()


async def assert_refused_cleanly(response, before: dict[str, int], pool) -> dict[str, Any]:
    """A 4xx with our JSON error body, and not a row written anywhere."""
    assert 400 <= response.status < 500, (response.status, await response.text())
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body["error"]) == {"code", "message", "details"} and body["error"]["message"]
    assert await table_counts(pool) == before
    return body


async def post_signed(client, path: str, body: bytes, *, content_type: str = "application/json",
                      extra: dict[str, str] | None = None):
    headers = {"Content-Type": content_type, **signed_headers(SECRET, body), **(extra or {})}
    return await client.post(path, data=body, headers=headers)


# ---- /webhooks/*: bodies -----------------------------------------------------------------------------------


@FUZZ
@given(path=st.sampled_from(WEBHOOKS), body=st.binary(max_size=300))
async def test_any_signed_bytes_are_never_a_5xx_and_refusals_write_nothing(client, pool, path, body):
    before = await table_counts(pool)
    response = await post_signed(client, path, body)
    assert response.status < 500
    if response.status >= 400:
        await assert_refused_cleanly(response, before, pool)


@FUZZ
@given(path=st.sampled_from(WEBHOOKS), value=json_values)
async def test_any_json_value_is_never_a_5xx_and_refusals_write_nothing(client, pool, path, value):
    before = await table_counts(pool)
    response = await post_signed(client, path, surrogate_safe_json(value))
    assert response.status < 500, await response.text()
    if response.status >= 400:
        await assert_refused_cleanly(response, before, pool)


CASE_FIELDS = ("customer_email", "customer_name", "subject", "description", "severity", "product",
               "product_version", "environment", "channel", "external_id", "callback_url", "metadata")


@FUZZ
@given(field=st.sampled_from(CASE_FIELDS), value=json_values)
async def test_a_case_with_one_field_of_any_type_or_text_is_stored_or_refused(client, pool, field, value):
    before = await table_counts(pool)
    response = await post_signed(client, "/webhooks/intake", surrogate_safe_json({**GOOD_CASE, field: value}))
    assert response.status < 500, await response.text()
    if response.status >= 400:
        await assert_refused_cleanly(response, before, pool)
    else:
        assert response.status in (200, 202)


@pytest.mark.parametrize("path, field", [
    *(("/webhooks/intake", f) for f in ("customer_name", "subject", "description", "product", "external_id")),
    ("/webhooks/intake", "metadata"), ("/webhooks/metrics", "unit"), ("/webhooks/metrics", "service"),
])
async def test_every_unicode_edge_in_every_text_field_is_stored_or_refused(client, pool, path, field):
    """Hypothesis may not pair each edge character with each field within its budget: this does."""
    for n, char in enumerate(EDGE_CHARS):
        text = f"a{char}b"
        if path.endswith("intake"):
            value: Any = {text: text} if field == "metadata" else text
            payload: Any = {**GOOD_CASE, "external_id": f"edge-{n}", field: value}
        else:
            payload = {"metrics": [{**GOOD_POINTS["metrics"][0], field: text}]}
        before = await table_counts(pool)
        response = await post_signed(client, path, surrogate_safe_json(payload))
        assert response.status < 500, (repr(char), await response.text())
        if response.status >= 400:
            await assert_refused_cleanly(response, before, pool)


POINT_FIELDS = ("name", "value", "unit", "service", "recorded_at", "threshold_warning", "threshold_critical")


@FUZZ
@given(field=st.sampled_from(POINT_FIELDS), value=json_values)
async def test_a_point_with_one_field_of_any_type_or_text_is_stored_or_refused(client, pool, field, value):
    before = await table_counts(pool)
    point = {**GOOD_POINTS["metrics"][0], field: value}
    response = await post_signed(client, "/webhooks/metrics", surrogate_safe_json({"metrics": [point]}))
    assert response.status < 500, await response.text()
    if response.status >= 400:
        await assert_refused_cleanly(response, before, pool)
    else:
        assert response.status == 202


@FUZZ
@given(path=st.sampled_from(WEBHOOKS), depth=st.one_of(st.sampled_from([50, 500, 900, 980, 1000, 1100, 5000, 200_000]),
                                                        st.integers(min_value=1, max_value=200_000)),
       opener=st.sampled_from(['[', '{"a":']))
async def test_deeply_nested_bodies_are_refused_or_stored_never_a_5xx(client, pool, path, depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    outer = {**GOOD_CASE, "metadata": None} if path.endswith("intake") else {"metrics": None}
    body = json.dumps(outer).replace("null", nested).encode()
    if len(body) > MAX_BODY:
        return
    before = await table_counts(pool)
    response = await post_signed(client, path, body)
    assert response.status < 500, await response.text()
    if response.status >= 400:
        await assert_refused_cleanly(response, before, pool)


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_and_writes_nothing(client, pool, path, declared):
    body = json.dumps({**GOOD_CASE, "metadata": {"blob": "x" * MAX_BODY}}).encode()
    before = await table_counts(pool)

    async def chunks():
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    data: Any = body if declared else chunks()
    response = await client.post(path, data=data, headers={"Content-Type": "application/json",
                                                           **signed_headers(SECRET, body)})
    error = await assert_refused_cleanly(response, before, pool)
    assert response.status == 413 and error["error"]["code"] in ("too_large", "request_entity_too_large")


# ---- /webhooks/*: headers and signatures --------------------------------------------------------------------

# What aiohttp's client will put in a header (it refuses control characters; the wire tests send those).
header_text = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=80)


@FUZZ
@given(path=st.sampled_from(WEBHOOKS), timestamp=st.one_of(st.none(), header_text),
       signature=st.one_of(st.none(), header_text, header_text.map(lambda s: "sha256=" + s)),
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""]))
async def test_forged_or_malformed_signature_headers_are_401_and_write_nothing(
        client, pool, path, timestamp, signature, content_type):
    body = json.dumps(GOOD_CASE if path.endswith("intake") else GOOD_POINTS).encode()
    headers = {"Content-Type": content_type}
    headers.update({TIMESTAMP_HEADER: timestamp} if timestamp is not None else {})
    headers.update({SIGNATURE_HEADER: signature} if signature is not None else {})
    before = await table_counts(pool)
    response = await client.post(path, data=body, headers=headers)
    error = await assert_refused_cleanly(response, before, pool)
    assert response.status == 401 and error["error"]["code"] == "bad_signature"


async def raw_request(client, head: bytes, body: bytes) -> tuple[int, bytes]:
    """Send bytes as they are, past the client's own header checks: the status line and the rest."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize(
    "inject",
    [
        lambda ts, sig: f"X-CX-Timestamp: {ts}\rX-Evil: 1\r\nX-CX-Signature: {sig}",  # bare CR
        lambda ts, sig: f"X-CX-Timestamp: {ts}\nX-CX-Signature: {sig}",  # bare LF line ends
        lambda ts, sig: f"X-CX-Timestamp: {ts}\r\nX-CX-Signature: {sig}\x00",  # NUL in a value
        lambda ts, sig: f"X-CX-Timestamp: {ts}\r\n X-CX-Signature: {sig}",  # obsolete line folding
        lambda ts, sig: f"X-CX-Timestamp: {ts}\r\nX-CX-Signature: sha256=00\r\nX-CX-Signature: {sig}",
        lambda ts, sig: f"X-CX-Timestamp: {ts}\r\nX-CX-Signature: sha256=\u00e9{sig[7:]}",  # non-ASCII
    ],
    ids=["bare-cr", "bare-lf", "nul", "folded", "forged-then-good", "non-ascii"],
)
async def test_header_injection_on_the_wire_is_refused_and_writes_nothing(client, pool, path, inject):
    body = json.dumps({**GOOD_CASE, "external_id": "wire-1"} if path.endswith("intake") else GOOD_POINTS).encode()
    ts = str(int(time.time()))
    headers = inject(ts, sign(SECRET, int(ts), body))
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}").encode()
    before = await table_counts(pool)
    status, answer = await raw_request(client, head, body)
    assert 400 <= status < 500, answer[:300]
    assert await table_counts(pool) == before


def test_the_signature_window_edges_exactly():
    body, now = b'{"a":1}', 1_800_000_000
    for offset in (-TOLERANCE_SECONDS, TOLERANCE_SECONDS, 0):
        stamp = now + offset
        assert verify(SECRET, str(stamp), sign(SECRET, stamp, body), body, now=now) is None, offset
    for offset in (-TOLERANCE_SECONDS - 1, TOLERANCE_SECONDS + 1):
        stamp = now + offset
        problem = verify(SECRET, str(stamp), sign(SECRET, stamp, body), body, now=now)
        assert problem is not None and problem.name == "EXPIRED", offset


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize("offset", [-(TOLERANCE_SECONDS - 5), TOLERANCE_SECONDS - 5])
async def test_a_timestamp_just_inside_the_window_is_accepted(client, pool, path, offset):
    body = json.dumps({**GOOD_CASE, "external_id": f"edge{offset}"} if path.endswith("intake") else GOOD_POINTS)
    raw = body.encode()
    before = await table_counts(pool)
    response = await client.post(path, data=raw, headers={"Content-Type": "application/json",
                                                          **signed_headers(SECRET, raw, now=time.time() + offset)})
    assert response.status == 202, await response.text()
    assert await table_counts(pool) != before


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize("offset", [-(TOLERANCE_SECONDS + 2), TOLERANCE_SECONDS + 2, -10**9, 10**9])
async def test_a_timestamp_just_outside_the_window_is_401_and_writes_nothing(client, pool, path, offset):
    raw = json.dumps(GOOD_CASE if path.endswith("intake") else GOOD_POINTS).encode()
    before = await table_counts(pool)
    stamp = int(time.time()) + offset
    response = await client.post(path, data=raw, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(SECRET, stamp, raw)})
    error = await assert_refused_cleanly(response, before, pool)
    assert response.status == 401 and "window" in error["error"]["message"]


@FUZZ
@given(pad=st.integers(min_value=0, max_value=3), digits=st.sampled_from(["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９"]))
async def test_a_replay_with_the_timestamp_spelled_differently_has_no_second_effect(client, pool, pad, digits):
    """A captured request sent again with its timestamp written another way (leading zeros, other
    digits) is the same request: refused, or answered with the first case, never a new one."""
    raw = json.dumps({"customer_email": "replay@example.com", "description": "Replay me"}).encode()
    stamp = int(time.time())
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(SECRET, stamp, raw)}
    first = await client.post("/webhooks/intake", data=raw, headers=headers)
    assert first.status in (200, 202)
    respelled = "0" * pad + "".join(digits[int(d)] for d in str(stamp))
    if respelled == str(stamp):
        return
    cases = await pool.fetchval("SELECT count(*) FROM cases")
    # aiohttp's client sends header values as latin-1: other digits go over the wire as UTF-8 bytes.
    head = (f"POST /webhooks/intake HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"{TIMESTAMP_HEADER}: {respelled}\r\n{SIGNATURE_HEADER}: {headers[SIGNATURE_HEADER]}").encode()
    status, answer = await raw_request(client, head, raw)
    assert status < 500, answer[:300]
    assert await pool.fetchval("SELECT count(*) FROM cases") == cases, (respelled, answer[:300])


@pytest.mark.parametrize("path", WEBHOOKS)
async def test_other_methods_are_a_json_405(client, pool, path):
    before = await table_counts(pool)
    response = await client.get(path)
    assert response.status == 405
    await assert_refused_cleanly(response, before, pool)


# ---- /csat/{token} --------------------------------------------------------------------------------------------

token_text = st.one_of(st.text(max_size=60), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                                                      min_size=43, max_size=43), edge_text)
score_text = st.one_of(st.text(max_size=6), st.sampled_from(["1", "5", "0", "6", "-1", "٣", "３", "1.0", "", " 4"]))


@FUZZ
@given(token=token_text, score=score_text)
async def test_any_rating_link_is_a_plain_page_and_a_bad_one_changes_nothing(client, pool, token, score):
    url = f"/csat/{quote(token.encode('utf-8', 'surrogatepass'), safe='')}?{urlencode({'score': score.encode('utf-8', 'surrogatepass')})}"
    before = await table_counts(pool)
    response = await client.get(url)
    assert response.status < 500, await response.text()
    if response.status >= 400:
        assert await table_counts(pool) == before
        if response.content_type == "application/json":  # the router's own 404 (an empty token)
            assert (await response.json())["error"]["code"]
        else:
            page = await response.text()
            assert response.content_type == "text/html" and "Nothing was recorded" in page
            assert "Traceback" not in page and "<script" not in page


async def test_other_methods_on_a_rating_link_are_a_json_405(client, pool):
    before = await table_counts(pool)
    for method in ("POST", "HEAD", "PUT"):
        response = await client.request(method, "/csat/abc?score=5")
        assert response.status == 405
        if method != "HEAD":
            await assert_refused_cleanly(response, before, pool)
    assert await table_counts(pool) == before


# ---- /slack/events (HTTP mode) --------------------------------------------------------------------------------
# Slack's signature check and the answers here are Bolt's (slack_bolt), except the 400 for a body
# Bolt cannot parse (bot/slack/app.py): Bolt refuses with a JSON 401, and answers a signed request
# no listener matches with an empty 404.


def slack_signed(body: str, offset: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()) + offset)
    return {"X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=stamp, body=body)}


# Signed interactive payloads (block_actions) that Slack would never send (no `actions`, an action
# without an action_id, a button value that is not ours, no channel) make Bolt or our listener fail:
# a 500, logged with an error id (handlers/errors.py). Only Slack or a holder of the signing secret
# can send one, so the signed bodies below leave interactive payloads out; the unsigned ones keep them.
slack_bodies = st.one_of(
    st.text(max_size=200),
    json_values.map(lambda v: json.dumps(v)),
    json_values.map(lambda v: urlencode({"payload": json.dumps(v)})),
    st.fixed_dictionaries({"type": st.sampled_from(["block_actions", "view_submission", "shortcut", "event_callback",
                                                    "url_verification", "interactive_message"]),
                           "user": st.one_of(st.none(), st.fixed_dictionaries({"id": edge_text})),
                           "actions": st.lists(st.fixed_dictionaries({"action_id": st.sampled_from(
                               ["review_approve", "review_reject", "review_take", "review_edit", "x"]),
                               "value": edge_text}), min_size=1, max_size=2)}).map(
        lambda v: urlencode({"payload": json.dumps(v)})),
)


def slack_could_send(body: str) -> bool:
    try:
        payload = json.loads(dict(parse_qsl(body)).get("payload", "{}"))
    except ValueError:
        return True
    return not isinstance(payload, dict) or payload.get("type") not in ("block_actions", "interactive_message")


slack_content_types = st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain"])


@FUZZ
@given(body=slack_bodies, content_type=slack_content_types)
async def test_signed_slack_junk_is_never_a_5xx_and_queues_nothing(client, pool, app_deps, body, content_type):
    assume(slack_could_send(body))
    _, slack = app_deps
    before, calls = await table_counts(pool), len(slack.requests)
    payload = body.encode("utf-8", "surrogatepass")
    response = await client.post("/slack/events", data=payload,
                                 headers={"Content-Type": content_type, **slack_signed(payload.decode("utf-8", "replace"))})
    assert response.status < 500, await response.text()
    assert await table_counts(pool) == before
    # At most a refusal: a click from someone who is not a reviewer is told so, and nothing else.
    made = {r.path.removeprefix("/api/") for r in slack.requests[calls:]}
    assert made <= {"auth.test", "chat.postEphemeral", "usergroups.users.list", "conversations.members"}, made


@FUZZ
@given(body=slack_bodies, offset=st.sampled_from([0, -(5 * 60 + 2), 5 * 60 + 2]),
       forge=st.sampled_from(["other-secret", "none", "window"]))
async def test_unsigned_forged_or_stale_slack_requests_are_401_and_write_nothing(
        client, pool, app_deps, body, offset, forge):
    before = await table_counts(pool)
    if forge == "none":
        headers: dict[str, str] = {}
    elif forge == "window":
        headers = slack_signed(body, offset=offset if offset else -(5 * 60 + 2))
    else:
        stamp = str(int(time.time()) + offset)
        headers = {"X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": SignatureVerifier("other").generate_signature(timestamp=stamp, body=body)}
    response = await client.post("/slack/events", data=body.encode("utf-8", "surrogatepass"),
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    # A body Bolt could not even parse is our 400 before Bolt's signature check; the rest are Bolt's 401.
    assert response.status in (400, 401), await response.text()
    assert response.content_type == "application/json" and (await response.json())["error"]
    assert await table_counts(pool) == before
