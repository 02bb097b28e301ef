"""Every job the product runs, by queue entrypoint: each decodes its payload and calls one pipeline
step or service with the collaborators it needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
import structlog

from bot import clients
from bot.ai import bulk_models
from bot.deps import Deps
from bot.detection import detect, posts_to_slack
from bot.model_tiers import model_for
from bot.runtime.backup import nightly_backup
from bot.runtime.metrics import refresh_open_alerts
from bot.runtime.worker import JobHandler
from bot.services.daily_report import daily_config
from bot.services.erasure import rewrite_erased
from bot.slack.thread_poster import SlackThreadPoster
from pipelines.batching.calls import Deferred
from pipelines.batching.run import run_batches
from pipelines.detection.summary import summarise_incident
from pipelines.drafting.step import draft_case
from pipelines.intake.gmail_sync import sync_mailbox
from pipelines.jobs import (
    ActionRequest,
    AlertActionRequest,
    AlertJob,
    CaseJob,
    DayJob,
    ErasureNotice,
    JobName,
    ReplyJob,
    ReportDelivery,
    ReportDestination,
    ShortcutRequest,
    SummaryJob,
)
from pipelines.learning.bugs import file_defect_bugs
from pipelines.learning.daily import run_daily, stored_report
from pipelines.learning.daily_metrics import day_bounds
from pipelines.learning.report_email import send_report_email
from pipelines.lifecycle.resolve import resolve_quiet
from pipelines.replies.outbox import Channels, send_reply
from pipelines.retention import apply_retention
from pipelines.triage.step import triage_case
from prompts import load

log = structlog.get_logger(__name__)

_NO_SLACK = "Slack is not configured (SLACK_BOT_TOKEN); the job waits in the queue"


async def _prune(deps: Deps, payload: bytes) -> None:
    await apply_retention(deps.pool, deps.settings.retention)


async def _erasure_notice(deps: Deps, payload: bytes) -> None:
    if deps.slack is None:
        raise RuntimeError(_NO_SLACK)
    await rewrite_erased(deps.slack, ErasureNotice.from_payload(payload))


async def _backup(deps: Deps, payload: bytes) -> None:
    made, removed = await nightly_backup(deps.settings, datetime.now(UTC))
    log.info("backup.written", path=str(made.path), bytes=made.size, seconds=round(made.seconds, 1),
             removed=[p.name for p in removed])


async def _triage(deps: Deps, payload: bytes) -> None:
    if deps.triager is None or deps.taxonomy is None:
        raise RuntimeError("this worker has no triager")
    outcome = await triage_case(deps.pool, deps.triager, deps.taxonomy, deps.thresholds,
                                CaseJob.from_payload(payload).case_id)
    if outcome is not None:  # None: triaged already, by an earlier attempt of this job
        result = outcome.result
        deps.metrics.observe_triage(outcome.decision.route.value, result.confidence if result else None,
                                    result.triager if result else None)


async def _gmail_sync(deps: Deps, payload: bytes) -> None:
    if deps.mailbox is None:
        raise RuntimeError("Gmail is not configured (GMAIL_TOKEN_FILE and SUPPORT_EMAIL)")
    await sync_mailbox(
        deps.pool,
        deps.mailbox,
        own_addresses=frozenset(a.lower() for a in (deps.settings.support_email,) if a),
        reopen_window=deps.settings.reopen_window,
        processed_label=deps.settings.gmail_processed_label or None,
    )


async def _draft(deps: Deps, payload: bytes) -> None:
    if deps.drafter is None or deps.taxonomy is None:
        raise RuntimeError("this worker has no drafter")
    await draft_case(deps.pool, deps.drafter, deps.embedder, deps.taxonomy, deps.draft_policy,
                     CaseJob.from_payload(payload).case_id, multilingual=deps.multilingual)


async def _send_reply(deps: Deps, payload: bytes) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        slack = SlackThreadPoster(deps.slack) if deps.slack is not None else None
        await send_reply(deps.pool, Channels(deps.mailbox, http, slack), deps.sender,
                         ReplyJob.from_payload(payload).outbox_id)


async def _review_card(deps: Deps, payload: bytes) -> None:
    if deps.review is None:
        raise RuntimeError(_NO_SLACK)
    await deps.review.post_card(CaseJob.from_payload(payload).case_id)


async def _urgent_alert(deps: Deps, payload: bytes) -> None:
    if deps.alerts is None:
        raise RuntimeError(_NO_SLACK)
    await deps.alerts.post(CaseJob.from_payload(payload).case_id)


async def _review_action(deps: Deps, payload: bytes) -> None:
    if deps.review is None:
        raise RuntimeError(_NO_SLACK)
    await deps.review.run_action(ActionRequest.from_payload(payload))


async def _review_sla(deps: Deps, payload: bytes) -> None:
    if deps.review_sla is None:
        return  # nothing is claimed without Slack, so the SLA resumes once it is configured
    await deps.review_sla.run(datetime.now(UTC))


async def _slack_case(deps: Deps, payload: bytes) -> None:
    if deps.home is None:
        raise RuntimeError(_NO_SLACK)
    await deps.home.create_case_from_shortcut(ShortcutRequest.from_payload(payload))


async def _alert_post(deps: Deps, payload: bytes) -> None:
    if deps.incidents is None:
        raise RuntimeError(_NO_SLACK)
    job = AlertJob.from_payload(payload)
    await deps.incidents.post(job.alert_id, remind=job.remind)
    await _alerts_changed(deps)


async def _alert_action(deps: Deps, payload: bytes) -> None:
    if deps.incidents is None:
        raise RuntimeError(_NO_SLACK)
    await deps.incidents.run_action(AlertActionRequest.from_payload(payload))
    await _alerts_changed(deps)


async def _alerts_changed(deps: Deps) -> None:
    # The gauge is also read when /metrics is scraped; this keeps a worker's own copy current.
    try:
        await refresh_open_alerts(deps.metrics, deps.pool)
    except Exception:  # a gauge must not retry a job whose work is done
        log.warning("metrics.open_alerts_failed", exc_info=True)


async def _detect(deps: Deps, payload: bytes) -> None:
    await detect(deps.pool, deps.settings, datetime.now(UTC), deps.embedder)


async def _alert_summary(deps: Deps, payload: bytes) -> None:
    client = clients.anthropic_client(deps.settings)
    if client is None:
        return  # without Claude the detector's template summary stays
    job = SummaryJob.from_payload(payload)
    async with client:
        direct, bulk = await bulk_models(deps.settings, deps.pool, client, job, JobName.ALERT_SUMMARY)
        await summarise_incident(
            deps.pool, direct, job.alert_id, bulk=bulk,
            model=model_for(deps.settings, "incident_summary"), system=load("incident_summary"),
            request=load("incident_summary_request"), post=posts_to_slack(deps.settings),
            pii=deps.settings.pii_policy,
        )


async def _resolve_quiet(deps: Deps, payload: bytes) -> None:
    await resolve_quiet(deps.pool, now=datetime.now(UTC), silence=timedelta(hours=deps.settings.resolve_after_hours))


async def _retrain(deps: Deps, payload: bytes) -> None:
    from pipelines.learning.retrain import retrain_if_due  # scikit-learn and SciPy, only where it runs

    await retrain_if_due(deps.pool, deps.embedder, deps.settings.retrain_min_new_examples, deps.taxonomy)


async def _daily_report(deps: Deps, payload: bytes) -> None:
    await run_daily(deps.pool, deps.embedder, DayJob.from_payload(payload).day, daily_config(deps.settings))


async def _report_deliver(deps: Deps, payload: bytes) -> None:
    job = ReportDelivery.from_payload(payload)
    report = await stored_report(deps.pool, job.day)
    if job.destination is ReportDestination.SLACK:
        if deps.daily_report is None:
            raise RuntimeError(_NO_SLACK)
        await deps.daily_report.deliver(report)
        return
    if deps.mailbox is None:
        raise RuntimeError("Gmail is not configured (GMAIL_TOKEN_FILE and SUPPORT_EMAIL) to email the daily report")
    await send_report_email(deps.pool, deps.mailbox, report, company=deps.settings.company_name)


async def _kb_draft(deps: Deps, payload: bytes) -> None:
    from pipelines.jobs import KbDraftJob
    from pipelines.learning.articles import draft_article

    settings, job = deps.settings, KbDraftJob.from_payload(payload)
    client = clients.anthropic_client(settings)
    draft = partial(draft_article, deps.pool, opportunity_id=job.opportunity_id,
                    model=model_for(settings, "kb_article"),
                    system=load("kb_article"), request=load("kb_article_request"), company=settings.company_name)
    if client is None:
        draft_id = await draft(None)  # offline: the template from the resolved replies
    else:
        async with client:
            direct, bulk = await bulk_models(settings, deps.pool, client, job, JobName.KB_DRAFT)
            try:
                draft_id = await draft(bulk or direct)  # no one waits for an article draft
            except Deferred:
                return  # the batch's answer runs this job again
    if draft_id is None:
        return
    if deps.articles is None:
        raise RuntimeError(_NO_SLACK)  # the draft is stored; the retry posts it
    await deps.articles.post_card(draft_id)


async def _batches(deps: Deps, payload: bytes) -> None:
    from pipelines.adapters.anthropic_batches import AnthropicBatches

    client = clients.anthropic_client(deps.settings)
    if client is None:
        return  # nothing is queued for a batch without Claude
    async with client:
        await run_batches(deps.pool, AnthropicBatches(client), now=datetime.now(UTC),
                          timeout=timedelta(minutes=deps.settings.batch_timeout_minutes))


async def _budget_check(deps: Deps, payload: bytes) -> None:
    if deps.budgets is None:
        raise RuntimeError(_NO_SLACK)
    await deps.budgets.check()


async def _article_action(deps: Deps, payload: bytes) -> None:
    from pipelines.jobs import ArticleActionRequest

    if deps.articles is None:
        raise RuntimeError(_NO_SLACK)
    await deps.articles.run_action(ArticleActionRequest.from_payload(payload))


async def _file_bugs(deps: Deps, payload: bytes) -> None:
    settings, day = deps.settings, DayJob.from_payload(payload).day
    file_bugs = partial(file_defect_bugs, deps.pool, embedder=deps.embedder, min_cases=settings.bug_min_cases,
                        until=day_bounds(day, settings.zone)[1], categories=settings.defect_categories)
    tracker = clients.build_tracker(settings)
    if tracker is None:
        await file_bugs(tracker=None)  # recorded, and logged that no tracker is configured: no retry
        return
    async with tracker:
        await file_bugs(tracker=tracker)


_JOBS: dict[str, Callable[[Deps, bytes], Awaitable[None]]] = {
    JobName.PRUNE: _prune, JobName.TRIAGE: _triage, JobName.GMAIL_SYNC: _gmail_sync, JobName.DRAFT: _draft,
    JobName.SEND_REPLY: _send_reply, JobName.REVIEW_CARD: _review_card, JobName.URGENT_ALERT: _urgent_alert,
    JobName.REVIEW_ACTION: _review_action, JobName.REVIEW_SLA: _review_sla, JobName.SLACK_CASE: _slack_case,
    JobName.ALERT_POST: _alert_post, JobName.ALERT_ACTION: _alert_action, JobName.DETECT: _detect,
    JobName.ALERT_SUMMARY: _alert_summary,
    JobName.RESOLVE_QUIET: _resolve_quiet,
    JobName.RETRAIN: _retrain,
    JobName.DAILY_REPORT: _daily_report, JobName.REPORT_DELIVER: _report_deliver,
    JobName.KB_DRAFT: _kb_draft, JobName.ARTICLE_ACTION: _article_action,
    JobName.FILE_BUGS: _file_bugs,
    JobName.BUDGET_CHECK: _budget_check,
    JobName.BATCHES: _batches,
    JobName.ERASURE_NOTICE: _erasure_notice,
    JobName.BACKUP: _backup,
}


def job_handlers(deps: Deps) -> dict[str, JobHandler]:
    """Every job the product runs, by queue entrypoint name, bound to this process's collaborators."""
    return {name: partial(run, deps) for name, run in _JOBS.items()}
