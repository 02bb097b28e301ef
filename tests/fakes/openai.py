"""A fake OpenAI embeddings API with deterministic, hash-derived vectors, for the real `openai` SDK."""

from __future__ import annotations

import base64
import hashlib
from collections import deque

import numpy as np
from aiohttp import web

from .base import FakeServer, Hang, RecordedRequest, StainlessFailures, Status, recorded, retry_headers

NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
ERROR_CODES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _error(code: int, message: str, headers: dict[str, str] | None = None, param: str | None = None) -> web.Response:
    error_type, error_code = ERROR_CODES.get(code, ("server_error", None))
    body = {"error": {"message": message, "type": error_type, "param": param, "code": error_code}}
    return web.json_response(body, status=code, headers=headers)


def embed(text: str, dimensions: int = 1536) -> np.ndarray:
    """The vector the fake serves for `text`: unit length, float32, stable across runs and processes."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeOpenAI(StainlessFailures, FakeServer):
    def __init__(self) -> None:
        super().__init__()
        # Tests can pin a text to a chosen vector, e.g. to make two texts near-duplicates.
        self.vectors: dict[str, np.ndarray] = {}
        self._script: deque[Status | Hang] = deque()

    # ---- scripting -------------------------------------------------------------------------------------------

    def script(self, *items: Status | Hang) -> None:
        """Queue failures for the next requests; with the queue empty, requests succeed."""
        self._script.extend(items)

    def vector_for(self, text: str, dimensions: int = 1536) -> np.ndarray:
        pinned = self.vectors.get(text)
        return np.asarray(pinned, dtype=np.float32) if pinned is not None else embed(text, dimensions)

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        auth = rec.header("Authorization") or ""
        if not auth.startswith("Bearer ") or auth == "Bearer ":
            return _error(401, "You didn't provide an API key.")
        if auth == "Bearer bad-key":
            return _error(401, "Incorrect API key provided: bad-key.")
        return None

    async def _embeddings(self, request: web.Request) -> web.Response:
        if self._script:
            item = self._script.popleft()
            if isinstance(item, Hang):
                await self.stall(item.seconds)
                return _error(503, "hang ended")
            return _error(item.code, item.message or "scripted failure", retry_headers(item.retry_after))

        body = recorded(request).json or {}
        model = body.get("model")
        if model not in NATIVE_DIMENSIONS:
            return _error(400, f"The model `{model}` does not exist", param="model")
        texts = body.get("input")
        if isinstance(texts, str) or (isinstance(texts, list) and texts and isinstance(texts[0], int)):
            texts = [texts]
        if not isinstance(texts, list) or not texts or any(t in ("", []) for t in texts):
            return _error(400, "'$.input' is invalid.", param="input")
        dimensions = body.get("dimensions") or NATIVE_DIMENSIONS[model]
        if "dimensions" in body and model == "text-embedding-ada-002":
            return _error(400, "This model does not support specifying dimensions.", param="dimensions")
        if dimensions > NATIVE_DIMENSIONS[model]:
            return _error(400, f"dimensions must be at most {NATIVE_DIMENSIONS[model]}", param="dimensions")

        base64_encoded = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            # Token-id inputs are hashed by their repr so they are deterministic too.
            vector = self.vector_for(text if isinstance(text, str) else repr(text), dimensions)
            # The SDK decodes base64 as little-endian float32 (np.frombuffer(..., dtype="float32")).
            encoded = base64.b64encode(vector.astype("<f4").tobytes()).decode() if base64_encoded else vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(max(len(t) // 4, 1) if isinstance(t, str) else len(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for m in NATIVE_DIMENSIONS]
        return web.json_response({"object": "list", "data": data})
