"""Customer replies, exactly once: an outbox row per draft (unique key), delivered by a job in the
customer's email thread or by a signed callback, with a lookup before any retried send."""

from __future__ import annotations

import email.policy
import email.utils
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from enum import StrEnum
from uuid import UUID

import aiohttp
import asyncpg
import structlog

from db import drafts as drafts_db
from db import jobs, pii_maps
from db.cases import REVIEWABLE, ActorType, CaseStatus, InvalidTransition, transition
from db.connection import Connection
from db.locks import try_advisory_lock
from db.pool import transaction
from pipelines.jobs import JobName, ReplyJob
from pipelines.lifecycle.csat import CsatLinks
from pipelines.ports import DeliveryRefused, Mailbox, ThreadPoster
from pipelines.privacy.policy import for_people
from pipelines.queue import queue_case_job
from pipelines.signatures import signed_headers

log = structlog.get_logger(__name__)

DRAFT_HEADER = "X-CX-Draft-Id"


@dataclass(frozen=True)
class Sender:
    """Who replies: the support address, the signature name, the key callbacks are signed with,
    and where the rating links of every reply point (None: replies ask for no rating)."""

    address: str
    company: str
    callback_secret: str | None = None
    csat: CsatLinks | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "cx-catalyst.invalid"


def reply_text(body: str, case_ref: str, rating: str | None = None) -> str:
    """What the customer reads: the draft, then the case reference on its own line, then the
    one-line rating request when there is one."""
    text = f"{body.rstrip()}\n\n--\nYour case reference: {case_ref}. Reply to this email to add anything."
    return f"{text}\n{rating}" if rating else text


def _subject(subject: str | None, case_ref: str) -> str:
    if not subject:
        return f"Your request {case_ref}"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


async def queue_reply(
    conn: Connection, case: drafts_db.CaseForDraft, draft_id: UUID, body: str, sender: Sender,
    *, approved_by: str | None,
) -> tuple[UUID, bool]:
    """The draft's outbox row and its send job, once however often this is called (call in the
    transaction that moves the case to `sending`); returns (outbox id, created now)."""
    # The draft was written with placeholders; the customer reads the case's own values.
    body = for_people(body, await pii_maps.load(conn, case.case_id))
    callback = case.metadata.get("callback_url")
    thread = slack_thread(case)
    rating = sender.csat.line(case.case_id, datetime.now(UTC)) if sender.csat else None
    outbox_id, created = await drafts_db.add_outgoing(
        conn,
        case_id=case.case_id,
        draft_id=draft_id,
        channel="slack" if thread else "callback" if callback else "email",
        to_address=thread or callback or case.customer_email,
        subject=_subject(case.subject, case.ref),
        body=reply_text(body, case.ref, rating),
        in_reply_to=case.email_message_id,
        references_header=case.email_message_id,
        thread_id=case.gmail_thread_id,
        message_id=f"<cx-{draft_id}@{sender.domain}>",
        approved_by=approved_by,
    )
    if created:
        await jobs.enqueue(conn, JobName.SEND_REPLY, ReplyJob(outbox_id=outbox_id).payload(),
                           dedupe_key=f"{JobName.SEND_REPLY}:{outbox_id}")
    return outbox_id, created


def slack_thread(case: drafts_db.CaseForDraft) -> str | None:
    """`channel/thread_ts` of the Slack message a case came from (its reply goes there), else None."""
    slack = case.metadata.get("slack") or {}
    if case.channel != "slack" or not slack.get("channel") or not slack.get("ts"):
        return None
    return f"{slack['channel']}/{slack.get('thread_ts') or slack['ts']}"


def compose_email(out: drafts_db.Outgoing, sender: Sender) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = email.utils.formataddr((f"{sender.company} Support", sender.address))
    message["To"] = out.to_address
    message["Subject"] = out.subject or ""
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = out.message_id
    if out.in_reply_to:
        message["In-Reply-To"] = out.in_reply_to
        message["References"] = out.references_header or out.in_reply_to
    message[DRAFT_HEADER] = str(out.draft_id)
    message["Auto-Submitted"] = "auto-replied" if out.approved_by is None else "no"
    message.set_content(out.body)
    return message.as_bytes()


class SendResult(StrEnum):
    SENT = "sent"
    FOUND_SENT = "found already sent"  # a previous attempt sent it and died before recording
    ALREADY_SENT = "already sent"
    BUSY = "another worker is sending it"
    REFUSED = "the channel refused it for good; back to review"


@dataclass(frozen=True)
class Channels:
    mailbox: Mailbox | None
    http: aiohttp.ClientSession | None
    slack: ThreadPoster | None = None


async def _deliver(out: drafts_db.Outgoing, sender: Sender, channels: Channels) -> str | None:
    if out.channel == "slack":
        if channels.slack is None:
            raise RuntimeError("Slack is not configured (SLACK_BOT_TOKEN) to reply in the case's thread")
        channel, thread_ts = out.to_address.split("/", 1)
        return await channels.slack.post(channel, thread_ts, out.body, out.draft_key)
    if out.channel == "email":
        if channels.mailbox is None:
            raise RuntimeError("no mailbox is configured to send email replies (GMAIL_TOKEN_FILE, SUPPORT_EMAIL)")
        return await channels.mailbox.send(compose_email(out, sender), out.thread_id)
    if channels.http is None or sender.callback_secret is None:
        raise RuntimeError("callbacks need WEBHOOK_SECRET to sign them")
    body = json.dumps({"case_id": str(out.case_id), "draft_id": str(out.draft_id), "reply": out.body}).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": out.draft_key,
               **signed_headers(sender.callback_secret, body)}
    async with channels.http.post(out.to_address, data=body, headers=headers) as response:
        if response.status >= 300:
            raise RuntimeError(f"callback answered HTTP {response.status}")
    return None


async def _already_sent(out: drafts_db.Outgoing, channels: Channels) -> str | None:
    """The provider's id of a reply an earlier attempt delivered before dying, if it can be found."""
    if out.channel == "email" and channels.mailbox is not None and out.message_id:
        return await channels.mailbox.find_sent(out.message_id)
    if out.channel == "slack" and channels.slack is not None:
        channel, thread_ts = out.to_address.split("/", 1)
        return await channels.slack.find(channel, thread_ts, out.draft_key)
    return None  # a callback carries an Idempotency-Key instead


async def _refused(conn: Connection, out: drafts_db.Outgoing, reason: str) -> None:
    """A reply no retry can deliver: the row fails for good and the case goes back to review,
    its card refreshed, so a person sees why (and can answer with Edit once it is fixed)."""
    async with conn.transaction():
        await drafts_db.mark_error(conn, out.outbox_id, reason, final=True)
        await transition(conn, out.case_id, CaseStatus.AWAITING_REVIEW, actor_type=ActorType.SYSTEM,
                         actor_id="outbox", note=f"reply not delivered: {reason}")
        await queue_case_job(conn, JobName.REVIEW_CARD, out.case_id)
    log.warning("reply.refused", outbox_id=str(out.outbox_id), reason=reason)


async def send_reply(pool: asyncpg.Pool, channels: Channels, sender: Sender, outbox_id: UUID) -> SendResult:
    """Deliver one outbox row. At most one worker at a time: the row's lock lives with the
    connection that holds it, so it dies with the worker, and all the bookkeeping goes through
    that connection. A row left in `sending` may have gone out, so the sent mail (or the Slack
    thread) is searched for it before sending again."""
    async with try_advisory_lock(pool, f"outbox:{outbox_id}") as conn:
        if conn is None:
            return SendResult.BUSY
        out = await drafts_db.outgoing(conn, outbox_id)
        if out is None:
            raise LookupError(f"no outbox row {outbox_id}")
        if out.status == "sent":
            return SendResult.ALREADY_SENT
        provider_id = None
        if out.status == "sending":
            provider_id = await _already_sent(out, channels)
        result = SendResult.FOUND_SENT
        if provider_id is None:
            # Committed before the attempt: if this worker dies mid-send, the next one looks first.
            await drafts_db.mark_sending(conn, outbox_id)
            try:
                provider_id = await _deliver(out, sender, channels)
            except DeliveryRefused as exc:
                await _refused(conn, out, str(exc))
                return SendResult.REFUSED
            except Exception as exc:
                await drafts_db.mark_error(conn, outbox_id, f"{type(exc).__name__}: {exc}")
                raise
            result = SendResult.SENT
        async with conn.transaction():
            await drafts_db.mark_sent(conn, outbox_id, provider_id)
            await drafts_db.record_reply(conn, out.case_id, channel=out.channel, body=out.body,
                                         external_message_id=out.message_id, actor_id=out.approved_by or "auto-send")
            try:
                await transition(conn, out.case_id, CaseStatus.REPLIED, actor_type=ActorType.SYSTEM,
                                 actor_id="outbox", note=f"reply sent by {out.channel}")
            except InvalidTransition as exc:  # e.g. a person took the case meanwhile: the reply still went out
                log.warning("reply.case_moved_on", case_id=str(out.case_id), status=exc.current)
    log.info("reply.sent", outbox_id=str(outbox_id), channel=out.channel, result=result.value)
    return result


class ApprovalOutcome(StrEnum):
    QUEUED = "queued"
    ALREADY_APPROVED = "already approved"
    NOT_AWAITING_REVIEW = "not awaiting review"


@dataclass(frozen=True)
class Approval:
    outcome: ApprovalOutcome
    outbox_id: UUID | None = None
    approved_by: str | None = None  # who won, when this approval came second


async def approve_draft(pool: asyncpg.Pool, draft_id: UUID, reviewer: str, sender: Sender,
                        body: str | None = None,
                        also: Callable[[Connection], Awaitable[None]] | None = None) -> Approval:
    """A reviewer approves a draft (optionally edited): queue its reply once. Concurrent approvals
    queue up on the case row; the second finds the first one's outbox row and is told who won.
    `also` runs in the same transaction when this approval is the one queued (the review hub
    records the decision and the feedback there)."""
    async with transaction(pool) as conn:
        draft = await drafts_db.get_draft(conn, draft_id)
        if draft is None:
            raise LookupError(f"no draft {draft_id}")
        case = await drafts_db.load_case(conn, draft.case_id, lock=True)
        assert case is not None
        existing = await drafts_db.outgoing_for_draft(conn, draft_id)
        if existing is not None:
            return Approval(ApprovalOutcome.ALREADY_APPROVED, existing.outbox_id, existing.approved_by or "auto-send")
        if case.status not in REVIEWABLE:
            return Approval(ApprovalOutcome.NOT_AWAITING_REVIEW)
        outbox_id, _ = await queue_reply(conn, case, draft_id, body or draft.body, sender, approved_by=reviewer)
        await transition(conn, case.case_id, CaseStatus.SENDING, actor_type=ActorType.REVIEWER, actor_id=reviewer,
                         note="draft approved" if body is None else "draft edited and approved")
        if also is not None:
            await also(conn)
    return Approval(ApprovalOutcome.QUEUED, outbox_id, reviewer)
