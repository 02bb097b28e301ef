"""The long-lived collaborators, built once at start-up from the settings and passed to whoever
needs them: the worker's jobs get the whole Deps, the Slack listeners its `services`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import asyncpg
from slack_sdk.web.async_client import AsyncWebClient

from bot import clients
from bot.ai import build_drafter, build_embedder, build_multilingual_embedder, build_triager
from bot.runtime.metrics import Metrics
from bot.services.alerts import UrgentAlertService
from bot.services.articles import SlackArticleService, confluence_pages
from bot.services.budgets import BudgetAlertService
from bot.services.commands import SlackCommandService
from bot.services.daily_report import DailyReportService
from bot.services.home import SlackHomeService
from bot.services.incidents import IncidentAlertService
from bot.services.review import SlackReviewService
from bot.services.review_sla import ReviewSlaService
from bot.settings import Settings
from handlers.services import Services
from pipelines.drafting.step import DraftPolicy
from pipelines.lifecycle.csat import CsatLinks
from pipelines.ports import AlertTracker, Drafter, Embedder, Mailbox, Tracker, Triager
from pipelines.replies.outbox import Sender
from pipelines.taxonomy import Taxonomy, load_taxonomy
from pipelines.triage.routing import Thresholds


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    metrics: Metrics
    taxonomy: Taxonomy | None = None
    embedder: Embedder | None = None
    multilingual: Embedder | None = None  # KB search's second vector, for questions not in English
    triager: Triager | None = None
    mailbox: Mailbox | None = None
    drafter: Drafter | None = None
    slack: AsyncWebClient | None = None
    # The service layer; the Slack ones exist when Slack is configured (SLACK_BOT_TOKEN).
    commands: SlackCommandService | None = None
    review: SlackReviewService | None = None
    home: SlackHomeService | None = None
    alerts: UrgentAlertService | None = None
    incidents: IncidentAlertService | None = None  # proactive alerts: their messages and buttons
    review_sla: ReviewSlaService | None = None
    articles: SlackArticleService | None = None  # drafted KB articles: their messages and buttons
    daily_report: DailyReportService | None = None  # the daily report's Slack post and chart
    budgets: BudgetAlertService | None = None  # budget warnings and "reached" notices

    @property
    def services(self) -> Services | None:
        """What the Slack listeners are given; None without Slack."""
        if self.review is None or self.home is None or self.commands is None:
            return None
        return Services(review=self.review, home=self.home, commands=self.commands, alerts=self.incidents,
                        articles=self.articles)

    @property
    def sender(self) -> Sender:
        s = self.settings
        key = s.csat_key
        csat = CsatLinks(s.public_url, key, s.csat_link_days) if s.public_url and key else None
        return Sender(s.support_email or "support@cx-catalyst.invalid", s.company_name, s.secret("webhook_secret"),
                      csat)

    @property
    def draft_policy(self) -> DraftPolicy:
        return DraftPolicy(self.settings.confidence_threshold_high, self.settings.always_review, self.sender,
                           self.settings.pii_policy,
                           auto_replies_per_day=self.settings.auto_replies_per_customer_per_day)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(high=self.settings.confidence_threshold_high, medium=self.settings.confidence_threshold_medium)


def build_deps(settings: Settings, pool: asyncpg.Pool) -> Deps:
    """Everything `cx run` needs, from settings. Raises TaxonomyError on a bad taxonomy file."""
    from pipelines.adapters.gmail_mailbox import GmailMailbox

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
        multilingual=build_multilingual_embedder(settings),
        triager=build_triager(settings, pool, taxonomy, embedder),
        mailbox=mailbox,
        drafter=build_drafter(settings, pool),
    )
    slack = clients.slack_client(settings, deps.metrics)
    return with_slack(deps, slack, clients.build_tracker(settings)) if slack is not None else deps


def with_slack(deps: Deps, client: AsyncWebClient, tracker: Tracker | None = None,
               alert_tracker: AlertTracker | None = None) -> Deps:
    """`deps` with a Slack client and the services that use it. Alerts' Jira issues go to
    `alert_tracker`, or else to `tracker` when it can file them too (Jira can)."""
    settings, pool = deps.settings, deps.pool
    alerts = UrgentAlertService(pool, client, settings)
    if alert_tracker is None and isinstance(tracker, AlertTracker):
        alert_tracker = tracker
    return replace(
        deps, slack=client, alerts=alerts,
        incidents=IncidentAlertService(pool, client, settings, alert_tracker, alerts),
        review=SlackReviewService(pool, client, settings, deps.sender, tracker, deps.taxonomy, alerts),
        home=SlackHomeService(pool, client, settings), commands=SlackCommandService(pool, deps.embedder, deps.multilingual),
        review_sla=ReviewSlaService(pool, client, settings),
        daily_report=DailyReportService(pool, client),
        budgets=BudgetAlertService(pool, client, settings.slack_alerts_channel, settings.zone),
        articles=SlackArticleService(pool, client, settings, deps.embedder, confluence_pages(settings),
                                     multilingual=deps.multilingual),
    )
