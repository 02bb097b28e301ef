"""What the listeners call, as Protocols. The service layer (bot/services/) implements them over the
database, the pipelines and the Slack client; the wiring hands every listener one `Services`,
which Bolt passes as the listener's `services` argument."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from handlers.article_card import ArticleCard
from handlers.case_query import CaseQuery
from handlers.case_views import CaseAnswer, KbResult, KbShare, MyCases
from handlers.home_views import HomeFacts
from handlers.review_card import ReviewCard
from pipelines.jobs import ActionRequest, AlertActionRequest, ArticleActionRequest, ShortcutRequest


class ReviewService(Protocol):
    """Review cards: clicks queued before the ack, and what the modals show."""

    async def submit(self, delivery_id: str, request: ActionRequest) -> bool:
        """True once the click is durably queued; False for a delivery already seen."""
        ...

    async def is_reviewer(self, user_id: str) -> bool: ...

    async def card(self, case_id: UUID) -> ReviewCard | None: ...

    def edit_choices(self) -> tuple[Mapping[str, Sequence[str]], Sequence[str]]:
        """The taxonomy's categories with their subcategories, and the priorities."""
        ...


class HomeService(Protocol):
    """App Home, the "Create support case" shortcut, and notes from review cards' threads."""

    async def home(self, user_id: str) -> HomeFacts: ...

    async def submit_shortcut(self, delivery_id: str, request: ShortcutRequest) -> bool:
        """True once the shortcut's job is queued; False for a delivery already seen."""
        ...

    async def add_thread_note(self, delivery_id: str, *, channel: str, thread_ts: str, ts: str, user: str,
                              text: str) -> bool:
        """True if the reply was a review card's and is now a note on its case."""
        ...


class CommandService(Protocol):
    """`/case` lookups and `/kb` searches."""

    async def find_case(self, query: CaseQuery) -> CaseAnswer: ...

    async def my_cases(self, user_id: str) -> MyCases: ...

    async def search_kb(self, query: str, k: int) -> list[KbResult]: ...

    async def share_kb(self, delivery_id: str, share: KbShare) -> list[KbResult] | None:
        """The shared results still published; None for a redelivered click."""
        ...


class AlertService(Protocol):
    """Proactive alerts in the alerts channel: clicks queued before the ack, like the review card's."""

    async def submit(self, delivery_id: str, request: AlertActionRequest) -> bool:
        """True once the click is durably queued; False for a delivery already seen."""
        ...


class ArticleService(Protocol):
    """Drafted knowledge-base articles in the metrics channel: clicks queued before the ack, and the
    draft the Edit modal shows."""

    async def submit(self, delivery_id: str, request: ArticleActionRequest) -> bool:
        """True once the click is durably queued; False for a delivery already seen."""
        ...

    async def is_reviewer(self, user_id: str) -> bool: ...

    async def card(self, draft_id: UUID) -> ArticleCard | None: ...


@dataclass(frozen=True)
class Services:
    review: ReviewService
    home: HomeService
    commands: CommandService
    alerts: AlertService | None = None  # None where a test wires only some listeners
    articles: ArticleService | None = None
