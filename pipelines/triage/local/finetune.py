"""A MiniLM sentence encoder fine-tuned on the labelled history, with a cosine-softmax head.

Needs torch and transformers (the `local` extra); imported only when the local triager trains or
loads such a model. One epoch on 10k short requests takes about a minute on two cores: that is
the point of it, a sharper encoder than the frozen one for this support desk's own intents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.triage.local import progress as stages
from pipelines.triage.local.encoder import MeanPoolEncoder, mean_pool


@dataclass
class TuneConfig:
    max_len: int = 64
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 2e-4
    head_lr: float = 1e-2
    scale: float = 20.0
    warmup: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0


def _bf16_available() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class TunedEncoder:
    """The fine-tuned weights as plain arrays (so the model pickles without torch), and the head."""

    def __init__(self, base_path: str, state: dict[str, np.ndarray], head: np.ndarray, config: TuneConfig) -> None:
        self.base_path, self.state, self.head, self.config = base_path, state, head, config
        self._module: MeanPoolEncoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_module": None}

    def _load(self) -> MeanPoolEncoder:
        if self._module is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            module = AutoModel.from_pretrained(self.base_path)
            module.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in self.state.items()},
                                   strict=False)
            self._module = MeanPoolEncoder(module, AutoTokenizer.from_pretrained(self.base_path), self.config.max_len)
        return self._module

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        return self._load().encode(texts, batch_size)


def _length_batches(texts: Sequence[str], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled, then sorted by length inside chunks of 50 batches: little padding, still random."""
    idx = rng.permutation(len(texts))
    batches: list[np.ndarray] = []
    for i in range(0, len(idx), size * 50):
        chunk = idx[i : i + size * 50]
        chunk = chunk[np.argsort([len(texts[j]) for j in chunk], kind="stable")]
        batches += [chunk[k : k + size] for k in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def fine_tune(base_path: str, texts: Sequence[str], y: np.ndarray, n_labels: int, frozen: np.ndarray,
              config: TuneConfig | None = None, progress: stages.TrainingProgress | None = None) -> TunedEncoder:
    """Fine-tune for `config.epochs`; the head starts at the frozen embeddings' label centroids."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    config = config or TuneConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    module = AutoModel.from_pretrained(base_path)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    for p in module.embeddings.parameters():
        p.requires_grad = False  # word embeddings stay put: 10k examples would only bend them
    centroids = np.stack([frozen[y == c].mean(0) if (y == c).any() else rng.normal(size=frozen.shape[1])
                          for c in range(n_labels)]).astype(np.float32)
    head = torch.nn.Parameter(F.normalize(torch.from_numpy(centroids), dim=-1).clone())
    optimiser = torch.optim.AdamW([
        {"params": [p for p in module.parameters() if p.requires_grad], "lr": config.lr,
         "weight_decay": config.weight_decay},
        {"params": [head], "lr": config.head_lr, "weight_decay": 0.0},
    ])
    batches: list[np.ndarray] = []
    for _ in range(math.ceil(config.epochs)):
        batches += _length_batches(texts, config.batch_size, rng)
    total = int(round(config.epochs * math.ceil(len(texts) / config.batch_size)))
    batches = batches[:total]
    warmup = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    targets = torch.as_tensor(y)
    bf16 = _bf16_available()
    progress = progress or stages.QUIET
    progress.stage(stages.FINE_TUNING, len(batches))
    module.train()
    for batch_ids in batches:
        batch = tokenizer([texts[j] for j in batch_ids], padding=True, truncation=True, max_length=config.max_len,
                          return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = mean_pool(module, batch["input_ids"], batch["attention_mask"])
        logits = config.scale * z.float() @ F.normalize(head, dim=-1).T
        loss = F.cross_entropy(logits, targets[batch_ids])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        progress.advance()
    module.eval()
    state = {k: v.detach().to(torch.float16).numpy() for k, v in module.state_dict().items()}
    tuned = TunedEncoder(base_path, state, F.normalize(head.detach(), dim=-1).numpy(), config)
    tuned._module = MeanPoolEncoder(module, tokenizer, config.max_len)
    return tuned


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True
