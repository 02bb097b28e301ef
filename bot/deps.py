"""The long-lived collaborators, built once at start-up and passed to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import asyncpg

from bot.metrics import Metrics
from bot.settings import Settings
from pipelines.ports import Embedder, Mailbox
from pipelines.routing import Thresholds
from pipelines.taxonomy import Taxonomy
from pipelines.triagers import Triager


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    metrics: Metrics
    taxonomy: Taxonomy | None = None
    embedder: Embedder | None = None
    triager: Triager | None = None
    mailbox: Mailbox | None = None

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(high=self.settings.confidence_threshold_high, medium=self.settings.confidence_threshold_medium)


def build_deps(settings: Settings, pool: asyncpg.Pool) -> Deps:
    """Everything `cx run` needs, from settings. Raises TaxonomyError on a bad taxonomy file."""
    from bot import clients
    from bot.ai import build_embedder, build_triager
    from pipelines.adapters.gmail_mailbox import GmailMailbox
    from pipelines.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(settings.taxonomy_path)
    embedder = build_embedder(settings)
    mailbox = None
    if settings.gmail_token_file is not None and settings.support_email:
        mailbox = GmailMailbox(partial(clients.gmail_service, settings), settings.support_email)
    return Deps(
        settings=settings,
        pool=pool,
        metrics=Metrics(),
        taxonomy=taxonomy,
        embedder=embedder,
        triager=build_triager(settings, pool, taxonomy, embedder),
        mailbox=mailbox,
    )
