"""Every interface the pipelines depend on, with the data that crosses it: the external services
(models, mailbox, wiki, tracker, Slack threads) and the triagers and drafters the steps are given.
Real adapters live in pipelines/adapters/ (and bot/slack/ for Slack); tests may pass in-repo fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeVar, get_args, runtime_checkable
from uuid import UUID

import numpy as np
from pydantic import BaseModel

from db.kb import Hit
from pipelines.models import TriageResult

M = TypeVar("M", bound=BaseModel)


class LLMUsage(BaseModel):
    """One model call, as llm_usage records it."""

    step: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # prompt-cache reads
    cache_write_tokens: int = 0  # prompt-cache writes, billed above the input price
    latency_ms: int = 0
    success: bool = True
    error: str | None = None
    prompt_version: str | None = None
    # Already in llm_usage: a Message Batch result is recorded when its batch is read, whatever the
    # step then makes of the answer, so the step must not record it again.
    recorded: bool = False


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

    async def add_label(self, message_id: str, label: str) -> None:
        """Put the label (by name, created if missing) on a message; no-op if it already has it."""
        ...

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

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        """One L2-normalised row per text, and the call's usage (a local model's at zero cost)."""
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


# ---- triage ----------------------------------------------------------------------------------------


def case_text(subject: str | None, body: str) -> str:
    """A case as triage reads it: the subject, then the message."""
    return f"{subject}\n{body}" if subject else body


# MiniLM reads about 256 tokens; OpenAI far more, but a case's gist is in its first paragraphs,
# and two near-duplicate cases must not drift apart because one quotes a long log.
EMBED_CHARS = 2_000


def case_embedding_text(subject: str | None, body: str) -> str:
    """What a case's vector is computed from: its text's first EMBED_CHARS. The cut is the detection
    pass's own (db/detection.py embeds live cases the same way), so a case gets the same vector
    whichever step embeds it."""
    return case_text(subject, body)[:EMBED_CHARS]


@dataclass(frozen=True)
class TriageInput:
    body: str
    subject: str | None = None
    case_id: UUID | None = None
    tier: str = "standard"
    severity: str | None = None
    product: str | None = None
    channel: str = "email"
    history: str = "no earlier cases"

    @property
    def text(self) -> str:
        return case_text(self.subject, self.body)


@dataclass(frozen=True)
class Triaged:
    result: TriageResult
    usage: list[LLMUsage] = field(default_factory=list)


class TriageUnavailable(RuntimeError):
    """No triager can answer this case: no trained model and no API key yet, or the only one there
    failed. The message says why, and what would help; the case then goes to a person."""

    def __init__(self, message: str, usage: Sequence[LLMUsage] = ()) -> None:
        super().__init__(message)
        self.usage = list(usage)


class Triager(Protocol):
    name: str

    async def triage(self, item: TriageInput) -> Triaged:
        """Labels for the case; raises TriageUnavailable when there is nothing to answer with."""
        ...


class LabelledExample(BaseModel):
    text: str
    label: str


# Few-shot context: the most similar labelled examples for a text, and the embedding call's usage.
SimilarExamples = Callable[[str, int], Awaitable[tuple[Sequence[LabelledExample], LLMUsage | None]]]


# ---- drafting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarCase:
    description: str
    reply: str


@dataclass(frozen=True)
class DraftInput:
    case_ref: str
    subject: str | None
    body: str
    customer_name: str | None
    tier: str
    category: str | None
    subcategory: str | None
    priority: str | None
    articles: list[Hit]
    similar: list[SimilarCase] = field(default_factory=list)
    house_examples: tuple[str, ...] = ()  # the desk's recent replies, the same all day (house_style.py)


@dataclass(frozen=True)
class Draft:
    reply: str
    cited: list[UUID]  # only ids among the retrieved articles
    dropped: list[str]  # cited by the model, not retrieved: removed
    confidence: float
    questions: list[str]
    risks: list[str]
    drafter: str
    model: str | None = None
    prompt_version: str | None = None
    usage: list[LLMUsage] = field(default_factory=list)


class Drafter(Protocol):
    name: str

    @property
    def wants_house_examples(self) -> bool:
        """Whether the next draft would use the desk's house-style examples (so they are worth reading)."""
        ...

    async def draft(self, item: DraftInput) -> Draft: ...


# ---- escalation ------------------------------------------------------------------------------------

TrackerPriority = Literal["urgent", "high", "medium", "low"]


@dataclass(frozen=True)
class IssueRef:
    key: str
    url: str


@dataclass(frozen=True)
class Escalation:
    case_id: UUID
    short_id: str
    summary: str
    description: str  # the customer's own words: filed as data, never as markup
    priority: TrackerPriority
    labels: tuple[str, ...] = ()
    reporter_note: str | None = None  # what the agent who escalated adds

    def __post_init__(self) -> None:
        if self.priority not in get_args(TrackerPriority):
            raise ValueError(f"priority must be one of {get_args(TrackerPriority)}, not {self.priority!r}")


class TrackerError(Exception):
    """The tracker refused or could not be reached; `retryable` says whether the same call may succeed later."""

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


class Tracker(Protocol):
    """The issue tracker escalations go to (Jira)."""

    async def escalate(self, escalation: Escalation) -> IssueRef:
        """File the case's issue, or return the one already filed for it."""
        ...


@dataclass(frozen=True)
class AlertIssue:
    """A proactive alert as the tracker files it: one issue per alert, whoever asks and however often."""

    alert_id: UUID
    summary: str  # one line; the tracker flattens and cuts it
    # (heading, text) in order: the headings are ours, the texts may quote customers and are filed
    # as data, never as markup.
    sections: tuple[tuple[str, str], ...]
    priority: TrackerPriority
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.priority not in get_args(TrackerPriority):
            raise ValueError(f"priority must be one of {get_args(TrackerPriority)}, not {self.priority!r}")


@runtime_checkable
class AlertTracker(Protocol):
    """Where a reviewer's "Create Jira" on an alert goes (Jira, like escalations)."""

    async def file_alert(self, issue: AlertIssue) -> IssueRef:
        """File the alert's issue, or return the one already filed for it."""
        ...


# ---- knowledge-base articles -------------------------------------------------------------------------


class ArticlePages(Protocol):
    """Where a validated article is also published as a page (Confluence), when configured."""

    async def create_page(self, space_key: str, title: str, storage_html: str) -> PageRef:
        """Create the page in the space, or return the space's page that already has this title (a
        retried publish finds the page it created before)."""
        ...


# ---- defect bugs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BugReport:
    """A recurring defect as the tracker files it: one Bug per fingerprint label."""

    label: str  # the fingerprint: the issue carries it and is found again by it
    summary: str  # one line; the tracker flattens and cuts it
    # (heading, text) in order: the headings are ours, the texts may quote customers and are filed
    # as data, never as markup.
    sections: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BugComment:
    """New cases of a bug already filed. `marker` (ours, plain) names this update: a comment that
    carries it is not added twice."""

    marker: str
    sections: tuple[tuple[str, str], ...]  # as in BugReport


@runtime_checkable
class BugTracker(Protocol):
    """Where repeated defects are filed as bugs (Jira)."""

    async def find_by_label(self, label: str) -> IssueRef | None:
        """The issue that carries `label`, if any (the oldest)."""
        ...

    async def file_bug(self, bug: BugReport) -> IssueRef:
        """File the bug, or return the issue that already carries its label."""
        ...

    async def comment(self, key: str, comment: BugComment) -> bool:
        """Add the comment to the issue; False if a comment with its marker is there already."""
        ...


class LLMRequest(BaseModel):
    """One structured call, kept whole so it can wait in a Message Batch and be sent later."""

    step: str
    model: str
    system: str
    user: str
    output_schema: dict[str, object]
    max_tokens: int
    prompt_version: str | None = None


BatchOutcome = Literal["succeeded", "errored", "canceled", "expired"]


class BatchResult(BaseModel):
    """One request's result, matched by its custom_id. A succeeded result carries the answer's fields (not
    yet validated: the step validates them against its output model) and its usage; any result with usage
    was billed."""

    custom_id: str
    outcome: BatchOutcome
    answer: dict[str, object] | None = None
    usage: LLMUsage | None = None
    error: str | None = None
    retryable: bool = False  # an errored request worth sending again (overloaded, rate limited, server error)


class BatchSubmitted(BaseModel):
    batch_id: str
    created_at: datetime
    request_count: int


class MessageBatches(Protocol):
    """Anthropic's Message Batches: bulk calls at half price, answered within 24 hours."""

    async def submit(self, requests: Sequence[tuple[str, LLMRequest]]) -> str:
        """Create one batch of (custom_id, request); returns the provider's batch id."""
        ...

    async def ended(self, batch_id: str) -> bool:
        ...

    async def results(self, batch_id: str) -> list[BatchResult]:
        """Every request's result; only once the batch has ended."""
        ...

    async def cancel(self, batch_id: str) -> None:
        ...

    async def recent(self, since: datetime) -> list[BatchSubmitted]:
        """The batches created since `since`, to find one whose creation was cut off before we stored its id."""
        ...
