"""Durable jobs: their names and the payload each one carries. Whoever enqueues a job (a step, a
Slack listener) and the worker that runs it share these definitions; free of the database, so
the listeners can build a payload."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class JobName(StrEnum):
    PRUNE = "maintenance.prune"  # the daily retention pass (RETENTION_*_DAYS); the name predates it
    TRIAGE = "case.triage"
    GMAIL_SYNC = "gmail.sync"
    DRAFT = "case.draft"  # self-service and review drafts
    REVIEW_CARD = "case.review_card"  # post or refresh the case's review card
    URGENT_ALERT = "case.urgent_alert"  # a critical case's alert in the alerts channel
    SEND_REPLY = "reply.send"
    REVIEW_ACTION = "review.action"  # a reviewer's click on a review card
    REVIEW_SLA = "review.sla"  # reminders and timeouts of pending reviews, every minute
    SLACK_CASE = "slack.create_case"  # the "Create support case" message shortcut's job
    DETECT = "detect.run"  # one detection pass, every DETECT_INTERVAL_MINUTES
    ALERT_POST = "alert.post"  # post or edit an alert's Slack message; a reminder in its thread
    ALERT_ACTION = "alert.action"  # a reviewer's click on an alert
    ALERT_SUMMARY = "alert.summarise"  # Claude's summary and root-cause hypothesis of a new incident
    RESOLVE_QUIET = "case.resolve_quiet"  # replied cases silent for RESOLVE_AFTER_HOURS resolve, hourly
    DAILY_REPORT = "learning.daily_report"  # yesterday's metrics, gaps, drafts, bugs; at DAILY_REPORT_HOUR
    REPORT_DELIVER = "learning.report_deliver"  # one report to one destination (Slack or email), once
    KB_DRAFT = "learning.kb_draft"  # draft an article for one KB gap and post it for validation
    ARTICLE_ACTION = "learning.article_action"  # Publish / Edit / Discard on a drafted article
    FILE_BUGS = "learning.file_bugs"  # repeated defects become (or update) one Jira bug each
    RETRAIN = "triage.retrain"  # retrain the local triager; keep the new model only if no worse
    BUDGET_CHECK = "budget.check"  # post due budget warnings and "reached" notices, every 5 minutes
    BATCHES = "llm.batches"  # send the calls waiting for a Message Batch, read ended batches; every minute
    ERASURE_NOTICE = "privacy.erasure_notice"  # rewrite the Slack messages about an erased customer's cases
    BACKUP = "maintenance.backup"  # pg_dump to BACKUP_DIR and rotation to BACKUP_KEEP files, at BACKUP_HOUR


class JobPayload(BaseModel):
    """A job's payload, stored as JSON bytes in the queue. Unknown keys are ignored, so a job
    queued by an older version still runs."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def payload(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload or b"{}")


class NoPayload(JobPayload):
    """Scheduled jobs that work on whatever is due: prune, Gmail sync, the review SLA."""


class CaseJob(JobPayload):
    """Triage, draft, review card, urgent alert: each is about one case."""

    case_id: UUID


class ReplyJob(JobPayload):
    outbox_id: UUID


class ReviewAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    TAKE = "take"
    ESCALATE = "escalate"
    EDIT = "edit"  # edited reply sent, with corrected labels
    RESOLVE = "resolve"  # "Mark resolved": the case is done, nothing is sent


class ActionRequest(JobPayload):
    """A reviewer's click, as the Slack listener queues it."""

    action: ReviewAction
    reviewer: str  # Slack user id
    case_id: UUID
    draft_id: UUID | None = None
    review_id: UUID | None = None  # the review the card showed: decided by someone else = lost race
    channel: str | None = None  # the card's message, to update in place
    ts: str | None = None
    reason: str | None = None  # reject
    note: str | None = None
    reply: str | None = None  # edit: the text to send
    category: str | None = None  # edit: the reviewer's labels, when they differ from triage's
    subcategory: str | None = None
    priority: str | None = None


class ShortcutRequest(JobPayload):
    """A use of the "Create support case" message shortcut, as the listener queues it."""

    reporter: str  # who used the shortcut
    channel: str
    message_ts: str
    text: str
    author: str | None  # the message's author; None for a bot's message
    author_bot: str | None = None
    thread_ts: str | None = None  # the message's own thread, when it is a reply
    response_url: str | None = None  # reaches the reporter even where the bot is not a member

    @property
    def author_id(self) -> str:
        return self.author or self.author_bot or "unknown"

    @property
    def reply_thread(self) -> str:
        """Where the answer goes: the thread the message is in, or the one it starts."""
        return self.thread_ts or self.message_ts


class AlertJob(JobPayload):
    """Bring an alert's Slack message up to date (post it, or edit it in place); with `remind`, also
    post a reminder in its thread."""

    alert_id: UUID
    remind: bool = False


class AlertAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    CREATE_JIRA = "create_jira"
    RESOLVE = "resolve"


class AlertActionRequest(JobPayload):
    """A reviewer's click on an alert, as the Slack listener queues it."""

    action: AlertAction
    reviewer: str  # Slack user id
    alert_id: UUID
    channel: str | None = None  # the alert's message, to update in place
    ts: str | None = None


class DayJob(JobPayload):
    """A daily job's local day (in TIMEZONE): the daily report, filing defect bugs."""

    day: date


class ReportDestination(StrEnum):
    SLACK = "slack"
    EMAIL = "email"


class ReportDelivery(JobPayload):
    """Deliver one day's report to one destination, once."""

    day: date
    destination: ReportDestination


class BulkJob(JobPayload):
    """A step whose model call may wait in a Message Batch (pipelines/batching). Run as queued, its call
    joins the next batch; `answer` runs it again with that call's answer (a batch_requests row); `sync`
    runs it with a direct call (its batch timed out, or the request failed for good)."""

    SUBJECT: ClassVar[str]
    sync: bool = False
    answer: UUID | None = None

    @property
    def subject_id(self) -> UUID:
        subject: UUID = getattr(self, self.SUBJECT)
        return subject

    @classmethod
    def resume(cls, subject_id: UUID, *, answer: UUID | None) -> Self:
        return cls.model_validate({cls.SUBJECT: subject_id, "answer": answer, "sync": answer is None})


class KbDraftJob(BulkJob):
    """Draft an article for one KB gap (an improvement opportunity) and post it for validation."""

    SUBJECT = "opportunity_id"
    opportunity_id: UUID


class SummaryJob(BulkJob):
    """Claude's summary of one alert: a direct call when the alert is urgent, else in a batch."""

    SUBJECT = "alert_id"
    alert_id: UUID


# The jobs a batch result resumes, by entrypoint.
BULK_JOBS: dict[str, type[BulkJob]] = {JobName.KB_DRAFT: KbDraftJob, JobName.ALERT_SUMMARY: SummaryJob}


class ArticleAction(StrEnum):
    PUBLISH = "publish"
    EDIT = "edit"  # the modal's submission: new title and body, kept as a draft
    DISCARD = "discard"


class ArticleActionRequest(JobPayload):
    """A reviewer's click on a drafted article (or their Edit modal's submission)."""

    action: ArticleAction
    reviewer: str  # Slack user id
    draft_id: UUID
    channel: str | None = None  # the card's message, to update in place
    ts: str | None = None
    title: str | None = None  # edit
    body: str | None = None  # edit


class SlackMessageRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    ts: str


class ErasureNotice(JobPayload):
    """The messages the desk posted about an erased customer's cases (review cards, alerts), to be
    replaced by a notice; with their threads, where the bot's own replies are replaced too."""

    messages: list[SlackMessageRef]
