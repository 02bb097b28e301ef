"""The small interfaces external services sit behind. Real adapters live in pipelines/adapters/;
tests may pass in-repo fakes of these."""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class LLMUsage(BaseModel):
    """One model call, as llm_usage records it."""

    step: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: int = 0
    success: bool = True
    error: str | None = None
    prompt_version: str | None = None


class LLMError(Exception):
    """The model could not give a valid answer (after the SDK's own retries)."""

    def __init__(self, message: str, usage: LLMUsage) -> None:
        super().__init__(message)
        self.usage = usage


class StructuredLLM(Protocol):
    async def complete(
        self,
        *,
        step: str,
        model: str,
        system: str,
        user: str,
        output: type[M],
        schema: dict[str, object] | None = None,
        max_tokens: int = 1024,
        prompt_version: str | None = None,
    ) -> tuple[M, LLMUsage]:
        """Ask for one structured answer; its fields are the only thing the model can produce."""
        ...


class MailboxMessage(BaseModel):
    id: str
    thread_id: str | None
    raw: bytes


class HistoryExpired(Exception):
    """The stored history id is too old for incremental sync (Gmail answers 404)."""


class Mailbox(Protocol):
    """The support inbox: enough of Gmail for incremental sync."""

    address: str

    async def current_history_id(self) -> int: ...

    async def added_since(self, history_id: int) -> tuple[list[str], int]:
        """Ids of inbox messages added since `history_id`, oldest first, and the new history id."""
        ...

    async def recent(self, limit: int) -> list[str]:
        """Ids of the newest inbox messages, oldest first (the fallback when history is too old)."""
        ...

    async def fetch(self, message_id: str) -> MailboxMessage: ...

    async def send(self, raw: bytes, thread_id: str | None) -> str:
        """Send an RFC 822 message (in `thread_id` when given); returns the provider's message id."""
        ...

    async def find_sent(self, rfc822_message_id: str) -> str | None:
        """The provider id of an already sent message with this Message-ID header, if any: how a
        retried send job notices that a worker died after sending and before recording it."""
        ...


class Embedder(Protocol):
    """Text to unit vectors. One model per deployment; `model` and `dimensions` name it."""

    provider: str
    model: str
    dimensions: int

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage | None]:
        """One L2-normalised row per text, and the call's usage when the provider bills it."""
        ...


class PageRef(BaseModel):
    """A knowledge-base page as listed by its source, without its body."""

    id: str
    title: str
    version: int
    url: str | None = None
    labels: list[str] = []


class KnowledgeSource(Protocol):
    """A wiki the knowledge base syncs from (Confluence Cloud)."""

    async def list_pages(self, space_key: str) -> list[PageRef]:
        """Every current page of the space, all pages of results followed."""
        ...

    async def page_html(self, page_id: str) -> str:
        """The page body in the source's storage format (XHTML)."""
        ...


class DeliveryRefused(Exception):
    """The channel will not take this reply however often it is retried (e.g. the bot is not in
    the Slack channel): a person has to look at it."""


class ThreadPoster(Protocol):
    """Replies to cases that came from Slack go back to the message's thread."""

    async def post(self, channel: str, thread_ts: str, text: str, key: str) -> str:
        """Post `text` in the thread, tagged with `key`; returns the message's ts."""
        ...

    async def find(self, channel: str, thread_ts: str, key: str) -> str | None:
        """The ts of a reply already posted in the thread with `key`, if any."""
        ...
