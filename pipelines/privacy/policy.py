"""What is redacted before text reaches an AI provider: on or off (PII_REDACTION) and the extra
patterns from settings, passed to each step that builds a provider request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipelines.ports import Embedder, LLMUsage
from pipelines.privacy.redaction import PLACEHOLDER, Pattern, Redacted, redact, restore


@dataclass(frozen=True)
class PiiPolicy:
    extra: tuple[Pattern, ...] = ()

    def redact(self, text: str, known: Mapping[str, str] | None = None) -> Redacted:
        return redact(text, extra=self.extra, known=known)


def unresolved(text: str, mapping: Mapping[str, str]) -> list[str]:
    """Placeholders in `text` that the case's map cannot fill: such a draft is never sent unread."""
    return sorted({m[0] for m in PLACEHOLDER.finditer(text) if m[0] not in mapping})


def for_people(text: str, mapping: Mapping[str, str]) -> str:
    """A draft as a reviewer or the customer reads it: the case's own values back in, nothing guessed."""
    return restore(text, mapping)


class RedactingEmbedder:
    """An embedder whose texts leave the machine: each is redacted first. Embeddings only rank
    text, so placeholders need no map."""

    def __init__(self, inner: Embedder, policy: PiiPolicy) -> None:
        self._inner, self._policy = inner, policy
        self.provider, self.model, self.dimensions = inner.provider, inner.model, inner.dimensions

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        return await self._inner.embed([self._policy.redact(t).text for t in texts])


def guard_embedder(embedder: Embedder | None, policy: PiiPolicy | None) -> Embedder | None:
    """The embedder to use: a local model never leaves the machine and embeds as it is."""
    if embedder is None or policy is None or embedder.provider == "local":
        return embedder
    return RedactingEmbedder(embedder, policy)
