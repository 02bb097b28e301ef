"""A Hugging Face encoder with mean pooling and unit length: MiniLM's sentence embedding.

Used for the fine-tuned triage encoder and, when it is equivalent, for the local embedder. A batch
runs eagerly; a single text, the per-case path, runs through a TorchScript trace of the encoder,
which cut one MiniLM encode from 6.0 to 4.1 ms on 2 cores. The trace is only fed unpadded input:
Hugging Face builds the attention mask with Python branches a trace would freeze, so padded
batches never take it. Needs torch and transformers (the `local` extra).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

log = structlog.get_logger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bars in logs and CLI output
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def mean_pool(module: Any, input_ids: Any, attention_mask: Any) -> Any:
    import torch

    hidden = module(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return _pool(hidden, attention_mask, torch)


def _pool(hidden: Any, attention_mask: Any, torch: Any) -> Any:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class MeanPoolEncoder:
    def __init__(self, module: Any, tokenizer: Any, max_len: int) -> None:
        self.module, self.tokenizer, self.max_len = module.eval().requires_grad_(False), tokenizer, max_len
        self._single: Any = None

    @property
    def dimensions(self) -> int:
        return int(self.module.config.hidden_size)

    def _tokens(self, texts: list[str]) -> Any:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")

    def _traced(self, batch: Any) -> Any:
        import torch

        if self._single is None:
            module = self.module

            class LastHidden(torch.nn.Module):  # type: ignore[misc]  # torch is Any here: pyproject skips it
                def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                    return module(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TracerWarnings about the branches noted above
                    traced = torch.jit.trace(LastHidden(), (batch["input_ids"], batch["attention_mask"]),
                                             check_trace=False)
                    self._single = torch.jit.freeze(traced.eval())
            except Exception as exc:  # an architecture TorchScript cannot trace still encodes, eagerly
                log.warning("encoder.trace_failed", error=str(exc)[:300])
                self._single = LastHidden()
        return self._single(batch["input_ids"], batch["attention_mask"])

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        import torch

        texts = list(texts)
        with torch.inference_mode():
            if len(texts) == 1:
                batch = self._tokens(texts)
                single: np.ndarray = _pool(self._traced(batch), batch["attention_mask"], torch).float().numpy()
                return single
            out = np.zeros((len(texts), self.dimensions), np.float32)
            order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths: little padding
            for i in range(0, len(texts), batch_size):
                ids = order[i : i + batch_size]
                batch = self._tokens([texts[j] for j in ids])
                out[ids] = mean_pool(self.module, batch["input_ids"], batch["attention_mask"]).float().numpy()
            return out
