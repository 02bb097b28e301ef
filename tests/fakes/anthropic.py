"""A fake Anthropic Messages API (POST /v1/messages) that answers from a script, for the real `anthropic` SDK."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import deque
from collections.abc import Callable
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

Block = dict[str, Any]
# A callable answers from the request body (e.g. to cite an id the request contains).
ScriptItem = Block | list[Block] | Status | Hang | Callable[[dict[str, Any]], Block]


def _tokens(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"))) // 4 if value else 0


def _error(
    code: int, message: str, error_type: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type or ERROR_TYPES.get(code, "api_error"), "message": message}}
    headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})}
    return web.json_response(body, status=code, headers=headers)


class FakeAnthropic(StainlessFailures, FakeServer):
    """`default` answers when the script is empty; without one the fake says 500 and tells the SDK not to retry."""

    def __init__(self, *, default: ScriptItem | None = None, models: tuple[str, ...] = MODELS) -> None:
        super().__init__()
        self.default = default
        self.models = models
        self._script: deque[ScriptItem] = deque()
        self._cache_prefixes: set[str] = set()

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
        total = _tokens({"messages": body.get("messages"), "system": body.get("system")})
        # Anything with a cache_control marker in system/tools counts as the cached prefix: written the first time,
        # read afterwards; like the real API, input_tokens then excludes it.
        prefix = {"system": body.get("system"), "tools": body.get("tools")}
        created = read = 0
        if "cache_control" in json.dumps(prefix):
            key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
            cached = _tokens(prefix)
            if key in self._cache_prefixes:
                read = cached
            else:
                created = cached
                self._cache_prefixes.add(key)
            total = max(total - _tokens({"system": body.get("system")}), 0)
        return {
            "input_tokens": total,
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

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = recorded(request).json or {}
        return web.json_response(
            {"input_tokens": _tokens({"messages": body.get("messages"), "system": body.get("system")})}
        )

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
