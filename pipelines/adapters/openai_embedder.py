"""Embedder over the OpenAI embeddings API, batched within its per-request limits."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from pipelines.ports import LLMError, LLMUsage

if TYPE_CHECKING:
    from openai import AsyncOpenAI

MAX_INPUTS = 2048
MAX_TOKENS = 300_000
DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def _batches(texts: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    tokens = 0
    for text in texts:
        estimate = len(text) // 3 + 1  # generous: the API counts tokens, we only need to stay under
        if batches[-1] and (len(batches[-1]) >= MAX_INPUTS or tokens + estimate > MAX_TOKENS):
            batches.append([])
            tokens = 0
        batches[-1].append(text)
        tokens += estimate
    return [b for b in batches if b]


class OpenAIEmbedder:
    provider = "openai"

    def __init__(self, client: AsyncOpenAI, model: str = "text-embedding-3-small") -> None:
        self._client = client
        self.model = model
        self.dimensions = DIMENSIONS.get(model, 1536)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        import openai

        started = time.perf_counter()
        rows: list[list[float]] = []
        prompt_tokens = 0
        for batch in _batches(texts):
            try:
                answer = await self._client.embeddings.create(model=self.model, input=batch)
            except openai.APIError as exc:
                usage = LLMUsage(step="embedding", provider="openai", model=self.model, success=False,
                                 error=f"{type(exc).__name__}: {exc}"[:500])
                raise LLMError("OpenAI embeddings failed", usage) from exc
            rows.extend(item.embedding for item in sorted(answer.data, key=lambda d: d.index))
            prompt_tokens += answer.usage.prompt_tokens
        vectors = np.asarray(rows, dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        usage = LLMUsage(step="embedding", provider="openai", model=self.model, input_tokens=prompt_tokens,
                         latency_ms=int((time.perf_counter() - started) * 1000))
        return vectors, usage
