"""Shared plumbing for the fake external services: an aiohttp app on an ephemeral port that records every request."""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, cast
from urllib.parse import parse_qsl

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any  # None unless the body was JSON
    form: dict[str, Any] | None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def params(self) -> dict[str, Any]:
        """Query, form and JSON object merged, the way APIs that accept all three (Slack) read arguments."""
        merged: dict[str, Any] = dict(self.query)
        merged.update(self.form or {})
        if isinstance(self.json, dict):
            merged.update(self.json)
        return merged

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return default


@dataclass(frozen=True)
class Status:
    """A scripted error answer; retry_after is seconds, None leaves the header out."""

    code: int
    retry_after: float | None = None
    message: str | None = None
    error_type: str | None = None


@dataclass(frozen=True)
class Hang:
    """A scripted stall, so the client under test hits its own timeout."""

    seconds: float


RECORDED = web.RequestKey("recorded", RecordedRequest)


def _parse_form(content_type: str, body: bytes) -> dict[str, Any] | None:
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    if content_type.startswith("multipart/"):
        # The middleware has already drained the stream, so aiohttp's own multipart reader can no longer run;
        # the stdlib MIME parser works on the bytes we kept.
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + body)
        form: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = cast(bytes, part.get_payload(decode=True))
                form[name] = payload if part.get_filename() else payload.decode(part.get_content_charset("utf-8"))
        return form
    return None


async def record(request: web.Request) -> RecordedRequest:
    body = await request.read()
    content_type = request.content_type
    parsed_json = None
    if body and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            parsed_json = json.loads(body)
        except ValueError:
            parsed_json = None
    # Multipart boundaries live in the raw header, which request.content_type strips.
    raw_type = request.headers.get("Content-Type", "") if content_type.startswith("multipart/") else content_type
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=dict(request.headers),
        body=body,
        json=parsed_json,
        form=_parse_form(raw_type, body),
    )


class FakeServer:
    """Subclasses add routes in `setup_routes` and may refuse requests in `check_auth`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = asyncio.Event()

    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        return None

    @web.middleware
    async def _recording(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rec = await record(request)
        self.requests.append(rec)
        request[RECORDED] = rec
        refusal = self.check_auth(rec)
        if refusal is not None:
            return refusal
        return await handler(request)

    async def start(self) -> Self:
        self._stopping.clear()
        app = web.Application(middlewares=[self._recording])
        self.setup_routes(app)
        # handler_cancellation ends a scripted hang as soon as the client gives up;
        # a short shutdown_timeout keeps teardown from waiting on keep-alive sockets.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("fake server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    async def stall(self, seconds: float) -> None:
        """Stall without holding up shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class StainlessFailures:
    """Scripted failures for the fakes of SDKs generated by Stainless (anthropic, openai)."""

    @staticmethod
    def status(code: int, retry_after: float | None = 0.001, message: str | None = None) -> Status:
        """retry_after=0.001 makes the SDK retry at once: it ignores 0 and falls back to exponential backoff."""
        return Status(code, retry_after, message)

    @staticmethod
    def hang(seconds: float) -> Hang:
        return Hang(seconds)


def recorded(request: web.Request) -> RecordedRequest:
    return request[RECORDED]


def retry_headers(retry_after: float | None) -> dict[str, str]:
    if retry_after is None:
        return {}
    # retry-after-ms is what the Stainless SDKs (anthropic, openai) prefer; retry-after is the standard one.
    return {"retry-after": str(max(0, round(retry_after))), "retry-after-ms": f"{retry_after * 1000:g}"}
