"""The long-lived collaborators, built once at start-up and passed to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import asyncpg
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime.metrics import Metrics
from bot.settings import Settings
from pipelines.drafting.drafters import Drafter
from pipelines.drafting.step import DraftPolicy
from pipelines.ports import Embedder, Mailbox
from pipelines.replies.outbox import Sender
from pipelines.triage.routing import Thresholds
from pipelines.taxonomy import Taxonomy
from pipelines.triage.triagers import Triager

if TYPE_CHECKING:
    from bot.services.commands import SlackCommandDesk
    from bot.services.home import SlackHomeDesk
    from bot.services.review import SlackReviewDesk


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    metrics: Metrics
    taxonomy: Taxonomy | None = None
    embedder: Embedder | None = None
    triager: Triager | None = None
    mailbox: Mailbox | None = None
    drafter: Drafter | None = None
    slack: AsyncWebClient | None = None
    review: SlackReviewDesk | None = None  # the review hub, when Slack is configured
    home_desk: SlackHomeDesk | None = None  # App Home, the message shortcut, card-thread notes
    commands: SlackCommandDesk | None = None  # /case and /kb

    @property
    def sender(self) -> Sender:
        s = self.settings
        return Sender(s.support_email or "support@cx-catalyst.invalid", s.company_name, s.secret("webhook_secret"))

    @property
    def draft_policy(self) -> DraftPolicy:
        return DraftPolicy(self.settings.confidence_threshold_high, self.settings.always_review, self.sender)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(high=self.settings.confidence_threshold_high, medium=self.settings.confidence_threshold_medium)


def build_deps(settings: Settings, pool: asyncpg.Pool) -> Deps:
    """Everything `cx run` needs, from settings. Raises TaxonomyError on a bad taxonomy file."""
    from bot import clients
    from bot.ai import build_drafter, build_embedder, build_triager
    from bot.services.commands import SlackCommandDesk
    from bot.services.home import SlackHomeDesk
    from bot.services.review import SlackReviewDesk
    from pipelines.adapters.gmail_mailbox import GmailMailbox
    from pipelines.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(settings.taxonomy_path)
    embedder = build_embedder(settings)
    mailbox = None
    if settings.gmail_token_file is not None and settings.support_email:
        mailbox = GmailMailbox(partial(clients.gmail_service, settings), settings.support_email)
    deps = Deps(
        settings=settings,
        pool=pool,
        metrics=Metrics(),
        taxonomy=taxonomy,
        embedder=embedder,
        triager=build_triager(settings, pool, taxonomy, embedder),
        mailbox=mailbox,
        drafter=build_drafter(settings),
        slack=clients.slack_client(settings),
        commands=SlackCommandDesk(pool, embedder),
    )
    if deps.slack is None:
        return deps
    desk = SlackReviewDesk(pool, deps.slack, settings, deps.sender, clients.build_tracker(settings), taxonomy)
    return replace(deps, review=desk, home_desk=SlackHomeDesk(pool, deps.slack, settings))
