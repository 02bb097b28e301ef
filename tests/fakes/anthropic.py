"""A fake Anthropic Messages API (POST /v1/messages) that answers from a script, for the real `anthropic` SDK."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .base import FakeServer, Hang, RecordedRequest, StainlessFailures, Status, recorded, retry_headers

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    429: "Number of requests has exceeded your rate limit",
    529: "Overloaded",
    500: "Internal server error",
}
MODELS = ("claude-sonnet-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6")
# Minimum cacheable prefix per model, from Anthropic's prompt-caching docs ("Cache limitations"); a shorter
# prefix marked with cache_control is processed uncached, without an error. Longest model prefix wins.
CACHE_MINIMUM_TOKENS = {
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-sonnet-4-6": 2048,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
DEFAULT_CACHE_MINIMUM = 1024  # Sonnet 4.5, Opus 4.1, Opus 4, Sonnet 4
CACHE_TTL_SECONDS = 300.0  # the default "ephemeral" lifetime, refreshed by each read

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

Block = dict[str, Any]
# A callable answers from the request body (e.g. to cite an id the request contains).
ScriptItem = Block | list[Block] | Status | Hang | Callable[[dict[str, Any]], Block]


def _tokens(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"))) // 4 if value else 0


def cache_minimum(model: str) -> int:
    matches = [prefix for prefix in CACHE_MINIMUM_TOKENS if model.startswith(prefix)]
    return CACHE_MINIMUM_TOKENS[max(matches, key=len)] if matches else DEFAULT_CACHE_MINIMUM


def prompt_segments(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The prompt in the order the API processes it (tools, system, messages): each block's text, and whether
    it carries a cache_control breakpoint. Tokens are counted from this text at 4 characters a token."""
    out: list[tuple[str, bool]] = []
    for tool in body.get("tools") or []:
        bare = {k: v for k, v in tool.items() if k != "cache_control"}
        out.append((json.dumps(bare, sort_keys=True, separators=(",", ":")), "cache_control" in tool))
    system = body.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks.append({"type": "text", "text": f"{message.get('role')}:"})
        blocks.extend([{"type": "text", "text": content}] if isinstance(content, str) else content or [])
    for block in blocks:
        text = block.get("text") if block.get("type") == "text" else None
        if text is None:
            text = json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True)
        out.append((text, "cache_control" in block))
    return out


@dataclass
class FakeBatch:
    """A Message Batch: its requests are answered when it is created (from the script, in order), and it ends
    after `polls_to_end` more retrieves (None: it never ends by itself). A cancel ends it at the next retrieve
    with every request canceled."""

    id: str
    requests: list[dict[str, Any]]
    results: list[dict[str, Any]]
    created_at: datetime
    polls_to_end: int | None
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    retrieves: int = field(default=0)

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_initiated_at else "in_progress"


def _error(
    code: int, message: str, error_type: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type or ERROR_TYPES.get(code, "api_error"), "message": message}}
    headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})}
    return web.json_response(body, status=code, headers=headers)


def _errored(code: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    error = {"type": error_type or ERROR_TYPES.get(code, "api_error"), "message": message}
    return {"type": "errored", "error": {"type": "error", "error": error}}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class FakeAnthropic(StainlessFailures, FakeServer):
    """`default` answers when the script is empty; without one the fake says 500 and tells the SDK not to retry."""

    def __init__(
        self,
        *,
        default: ScriptItem | None = None,
        models: tuple[str, ...] = MODELS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.default = default
        self.models = models
        # Injectable so a test can let a cache entry expire without waiting five minutes.
        self.clock = clock
        self._script: deque[ScriptItem] = deque()
        self._cache_expiry: dict[str, float] = {}  # prefix hash -> when it expires
        self.batches: dict[str, FakeBatch] = {}
        # How many retrieves a new batch stays in progress for; None: until it is canceled (a batch that hangs).
        self.batch_polls_to_end: int | None = 0

    # ---- scripting -------------------------------------------------------------------------------------------

    def script(self, *items: ScriptItem) -> None:
        """Queue answers: a content block, a list of blocks, or a full message dict (with "content"), or a failure."""
        self._script.extend(items)

    @staticmethod
    def text(text: str) -> Block:
        return {"type": "text", "text": text}

    @staticmethod
    def tool_use(name: str, input: dict[str, Any]) -> Block:
        return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": input}

    @property
    def pending(self) -> int:
        return len(self._script)

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_post("/v1/messages/batches", self._batch_create)
        app.router.add_get("/v1/messages/batches", self._batch_list)
        app.router.add_get("/v1/messages/batches/{id}", self._batch_retrieve)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._batch_cancel)
        app.router.add_get("/v1/messages/batches/{id}/results", self._batch_results)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        # anthropic 2.x sends api_key as "Authorization: Bearer", older SDKs and curl use x-api-key: take either.
        auth = rec.header("Authorization") or ""
        key = rec.header("x-api-key") or (auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None)
        if not key:
            return _error(401, "x-api-key header is required")
        if key == "bad-key":
            return _error(401, "invalid x-api-key")
        return None

    def _usage(self, body: dict[str, Any], content: list[Block]) -> dict[str, int]:
        """As the API accounts it: the prefix up to the last cache_control breakpoint is read from the cache
        when the same model saw the same prefix within its lifetime (which the read renews), written otherwise;
        a prefix below the model's minimum is not cached at all. input_tokens is the uncached remainder."""
        segments = prompt_segments(body)
        total = sum(len(text) for text, _ in segments) // 4
        marked = [i for i, (_, mark) in enumerate(segments) if mark]
        created = read = 0
        if marked:
            prefix = [text for text, _ in segments[: marked[-1] + 1]]
            cached = sum(len(text) for text in prefix) // 4
            if cached >= cache_minimum(body["model"]):
                key = hashlib.sha256(json.dumps([body["model"], prefix]).encode()).hexdigest()
                now = self.clock()
                if self._cache_expiry.get(key, float("-inf")) > now:
                    read = cached
                else:
                    created = cached
                self._cache_expiry[key] = now + CACHE_TTL_SECONDS
        return {
            "input_tokens": total - read - created,
            "output_tokens": max(_tokens(content), 1),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": created,
        }

    def _message(self, body: dict[str, Any], item: Block | list[Block]) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if isinstance(item, dict) and "content" in item:
            overrides, item = dict(item), item["content"]
        content = [item] if isinstance(item, dict) else list(item)
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self._usage(body, content),
        }
        message.update(overrides)
        return message

    async def _messages(self, request: web.Request) -> web.Response:
        body = recorded(request).json
        if not isinstance(body, dict):
            return _error(400, "request body must be JSON")
        missing = [k for k in ("model", "max_tokens", "messages") if k not in body]
        if missing:
            return _error(400, f"{missing[0]}: Field required")
        if body.get("stream"):
            return _error(400, "FakeAnthropic does not stream; call messages.create without stream=True")
        item = self._script.popleft() if self._script else self.default
        if callable(item):
            item = item(body)
        if item is None:
            return _error(500, "no scripted response", headers={"x-should-retry": "false"})
        if isinstance(item, Hang):
            await self.stall(item.seconds)
            return _error(504, "hang ended", "timeout_error")
        if isinstance(item, Status):
            message = item.message or ERROR_MESSAGES.get(item.code, "error")
            return _error(item.code, message, item.error_type, retry_headers(item.retry_after))
        return web.json_response(self._message(body, item), headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})

    # ---- Message Batches ---------------------------------------------------------------------------------------

    def _batch_result(self, params: dict[str, Any]) -> dict[str, Any]:
        """One request's result, answered like a message: a scripted Status becomes an errored result."""
        item = self._script.popleft() if self._script else self.default
        if callable(item):
            item = item(params)
        if item is None or isinstance(item, Hang):
            return _errored(500, "no scripted response")
        if isinstance(item, Status):
            return _errored(item.code, item.message or ERROR_MESSAGES.get(item.code, "error"), item.error_type)
        return {"type": "succeeded", "message": self._message(params, item)}

    def _batch_json(self, batch: FakeBatch) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if batch.ended_at is None:
            counts["processing"] = len(batch.requests)
        else:
            for result in batch.results:
                counts[result["result"]["type"]] += 1
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status, "request_counts": counts,
            "created_at": _iso(batch.created_at), "expires_at": _iso(batch.created_at + timedelta(hours=24)),
            "ended_at": _iso(batch.ended_at), "cancel_initiated_at": _iso(batch.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if batch.ended_at else None,
        }

    def _batch(self, request: web.Request) -> FakeBatch | web.Response:
        batch = self.batches.get(request.match_info["id"])
        return batch if batch is not None else _error(404, f"message batch {request.match_info['id']} not found")

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = recorded(request).json
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests: Field required")
        ids = [r.get("custom_id") for r in requests]
        if not all(isinstance(i, str) and _CUSTOM_ID.match(i) for i in ids):
            return _error(400, "requests: custom_id must match ^[a-zA-Z0-9_-]{1,64}$")
        if len(set(ids)) != len(ids):
            return _error(400, "requests: custom_id values must be unique within a batch")
        for r in requests:
            missing = [k for k in ("model", "max_tokens", "messages") if k not in (r.get("params") or {})]
            if missing:
                return _error(400, f"requests.{r['custom_id']}.params.{missing[0]}: Field required")
        results = [{"custom_id": r["custom_id"], "result": self._batch_result(r["params"])} for r in requests]
        batch = FakeBatch(id=f"msgbatch_{uuid.uuid4().hex[:24]}", requests=requests, results=results,
                          created_at=datetime.now(UTC), polls_to_end=self.batch_polls_to_end)
        self.batches[batch.id] = batch
        return web.json_response(self._batch_json(batch))

    async def _batch_list(self, request: web.Request) -> web.Response:
        data = [self._batch_json(b) for b in sorted(self.batches.values(), key=lambda b: b.created_at, reverse=True)]
        return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _batch_retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None:
            batch.retrieves += 1
            if batch.cancel_initiated_at is not None or (
                    batch.polls_to_end is not None and batch.retrieves > batch.polls_to_end):
                batch.ended_at = datetime.now(UTC)
        return web.json_response(self._batch_json(batch))

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None and batch.cancel_initiated_at is None:
            batch.cancel_initiated_at = datetime.now(UTC)
            # Canceled before any request was processed: none is billed.
            batch.results = [{"custom_id": r["custom_id"], "result": {"type": "canceled"}} for r in batch.requests]
        return web.json_response(self._batch_json(batch))

    async def _batch_results(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None:
            return _error(400, f"message batch {batch.id} has not ended")
        # Not in request order, as the API warns: results are matched by custom_id.
        lines = [json.dumps(r) for r in reversed(batch.results)]
        return web.Response(body="\n".join(lines).encode(), content_type="application/binary")

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = recorded(request).json or {}
        return web.json_response({"input_tokens": sum(len(text) for text, _ in prompt_segments(body)) // 4})

    def _model_info(self, model: str) -> dict[str, Any]:
        return {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}

    async def _models(self, request: web.Request) -> web.Response:
        data = [self._model_info(m) for m in self.models]
        return web.json_response(
            {"data": data, "has_more": False, "first_id": self.models[0], "last_id": self.models[-1]}
        )

    async def _model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            return _error(404, f"model: {model}")
        return web.json_response(self._model_info(model))
