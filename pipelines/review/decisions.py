"""The review hub's decisions (workflow 4): open a case's review, and apply a reviewer's approve,
reject, take, escalate or Mark resolved. Each decision is one transaction: the case moves, the review closes, feedback is
written; of two reviewers acting at once exactly one wins and the other learns who did."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from db import drafts as drafts_db
from db import examples, jobs, pii_maps
from db import lifecycle as lifecycle_db
from db import review as review_db
from db.cases import REVIEWABLE, ActorType, CaseStatus, transition
from db.connection import Connection
from db.locks import advisory_lock
from db.pool import transaction
from pipelines.jobs import ActionRequest, JobName, ReviewAction
from pipelines.ports import Escalation, Tracker, TrackerError, TrackerPriority, TriageInput
from pipelines.privacy.policy import for_people
from pipelines.queue import queue_case_job
from pipelines.replies.outbox import ApprovalOutcome, Sender, approve_draft

CardFacts = review_db.CardFacts
# How long a card job waits for another writer of the same card (a post or refresh in flight,
# itself bounded by the Slack client's timeouts) before it gives up and is retried.
CARD_WRITER_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ActionResult:
    done: bool  # this click changed the case
    winner: str | None = None  # when it did not: who acted first (a Slack user id, or "auto-send")
    winner_action: str | None = None
    state: str | None = None  # the case's state when the click came too late
    refused: str | None = None  # an outside service said no (e.g. Jira rejected the issue): why


async def submit_many(pool: asyncpg.Pool, clicks: Sequence[tuple[str, ActionRequest]]) -> list[bool]:
    """Queue clicks' work in one transaction (one commit): each click is queued unless its delivery
    id was seen, in this batch or before (a redelivery). True for each click queued."""
    async with transaction(pool) as conn:
        new = await review_db.first_deliveries(conn, [delivery_id for delivery_id, _ in clicks])
        queued: list[bool] = []
        for delivery_id, _ in clicks:
            queued.append(delivery_id in new)
            new.discard(delivery_id)  # a second copy in the same batch is a redelivery too
        await jobs.enqueue_many(conn, JobName.REVIEW_ACTION,
                                [request.payload() for (_, request), q in zip(clicks, queued) if q])
    return queued


@asynccontextmanager
async def card_writer(pool: asyncpg.Pool, case_id: UUID, *,
                      wait: float = CARD_WRITER_WAIT_SECONDS) -> AsyncIterator[Connection]:
    """The one writer of a case's card: without it, a card job and a click's refresh could both
    post a first card, or an older update land after a newer one. Yields the connection holding
    the turn; the card's reads and writes go through it, so a writer needs no second connection."""
    async with advisory_lock(pool, f"card:{case_id}", wait=wait) as conn:
        yield conn


async def prepare_card(conn: Connection, case_id: UUID, timeout_hours: float) -> CardFacts | None:
    """The card's facts, with the case's pending review opened if it awaits one."""
    async with conn.transaction():
        facts = await review_db.card_facts(conn, case_id)
        # Only a case waiting for review opens one: a human-owned case was taken or rejected, and
        # its decided review stays on the card.
        if facts is None or facts.status != CaseStatus.AWAITING_REVIEW or facts.review_status == "pending":
            return await _shown(conn, facts)
        due = datetime.now(UTC) + timedelta(hours=timeout_hours)
        reason = facts.decision_reason or facts.triage_reason or "needs a reviewer"
        await review_db.open_review(conn, case_id, facts.draft, facts.draft_confidence, reason, due)
        return await _shown(conn, await review_db.card_facts(conn, case_id))


async def _shown(conn: Connection, facts: CardFacts | None) -> CardFacts | None:
    """Facts as a reviewer sees them: the draft's placeholders filled from the case's own map."""
    if facts is None or not facts.draft:
        return facts
    return replace(facts, draft=for_people(facts.draft, await pii_maps.load(conn, facts.case_id)))


async def record_card(conn: Connection, case_id: UUID, channel: str, ts: str) -> None:
    await review_db.save_card_message(conn, case_id, channel, ts)


async def begin_card_post(conn: Connection, case_id: UUID) -> datetime | None:
    """Before a first card is posted: when an earlier post began that was never recorded (its
    process died between Slack's answer and the record), else None."""
    return await review_db.begin_card_post(conn, case_id)


async def card_facts(pool: asyncpg.Pool, case_id: UUID) -> CardFacts | None:
    async with pool.acquire() as conn:
        return await _shown(conn, await review_db.card_facts(conn, case_id))


async def queue_card(pool: asyncpg.Pool, case_id: UUID) -> None:
    """Post or refresh the case's card in a job of its own (one queued per case at a time)."""
    async with pool.acquire() as conn:
        await queue_case_job(conn, JobName.REVIEW_CARD, case_id)


async def apply(pool: asyncpg.Pool, sender: Sender, request: ActionRequest,
                tracker: Tracker | None = None) -> ActionResult:
    if request.action is ReviewAction.APPROVE:
        return await _approve(pool, sender, request)
    if request.action is ReviewAction.REJECT:
        return await _reject(pool, request)
    if request.action is ReviewAction.ESCALATE:
        return await _escalate(pool, tracker, request)
    if request.action is ReviewAction.EDIT:
        return await _approve(pool, sender, request)
    if request.action is ReviewAction.RESOLVE:
        return await _resolve(pool, request)
    return await _take(pool, request)


async def _approve(pool: asyncpg.Pool, sender: Sender, request: ActionRequest) -> ActionResult:
    edited = request.action is ReviewAction.EDIT
    if edited and request.reply and (request.draft_id is None or await _draft_sent(pool, request.draft_id)):
        # Nothing to edit, or the card's draft already went out (a reopened case): the reviewer's
        # text is a draft of its own, with its own outbox key.
        request = request.model_copy(update={"draft_id": await _reviewer_draft(pool, request)})
    if request.draft_id is None:
        raise ValueError("approve needs a draft")

    async def record(conn: Connection) -> None:
        facts = await review_db.card_facts(conn, request.case_id)
        if facts is None:
            raise LookupError(f"no case {request.case_id}")
        # An approval needs the review still open: decided first (rejected, say), it is rolled back.
        # An edit is the reviewer's own reply and goes out while the case is theirs to answer
        # (approve_draft checks that); two at once still send once, as the case moves to `sending`.
        if not edited and facts.review_id is not None and facts.review_status != "pending":
            raise _Decided(facts)
        if facts.review_id is not None and facts.review_status == "pending":
            await review_db.decide(conn, facts.review_id, "edited" if edited else "approved", request.reviewer,
                                   comments=request.note, final_solution=request.reply if edited else None)
        if not edited:
            await review_db.add_feedback(conn, request.case_id, facts.review_id, "approval", request.reviewer,
                                         field="draft")
            return
        await review_db.add_feedback(conn, request.case_id, facts.review_id, "edit", request.reviewer, field="draft",
                                     ai_value=facts.draft, human_value=request.reply, comment=request.note)
        await _learn_labels(conn, facts, request)

    try:
        approval = await approve_draft(pool, request.draft_id, request.reviewer, sender,
                                       body=request.reply if edited else None, also=record)
    except _Decided as decided:
        return _late(decided.facts)
    if approval.outcome is ApprovalOutcome.QUEUED:
        return ActionResult(done=True)
    if approval.outcome is ApprovalOutcome.ALREADY_APPROVED:
        return ActionResult(done=False, winner=approval.approved_by, winner_action="approved")
    return await _too_late(pool, request.case_id)


async def _reject(pool: asyncpg.Pool, request: ActionRequest) -> ActionResult:
    async with transaction(pool) as conn:
        facts = await _locked_facts(conn, request.case_id)
        if facts.status not in REVIEWABLE or facts.review_status != "pending" or facts.review_id is None:
            return _late(facts)
        comment = ": ".join(p for p in (request.reason, request.note) if p)
        await review_db.decide(conn, facts.review_id, "rejected", request.reviewer, comments=comment or None)
        await review_db.add_feedback(conn, request.case_id, facts.review_id, "rejection", request.reviewer,
                                     field="draft", ai_value=facts.draft, comment=comment or None)
        await review_db.assign(conn, request.case_id, request.reviewer)
        if facts.status == CaseStatus.AWAITING_REVIEW:
            await transition(conn, request.case_id, CaseStatus.HUMAN_OWNED, actor_type=ActorType.REVIEWER,
                             actor_id=request.reviewer, note=f"draft rejected: {comment}" if comment else "draft rejected")
    return ActionResult(done=True)


async def _take(pool: asyncpg.Pool, request: ActionRequest) -> ActionResult:
    async with transaction(pool) as conn:
        facts = await _locked_facts(conn, request.case_id)
        if facts.status not in REVIEWABLE:
            return _late(facts)
        if facts.owner is not None:
            return ActionResult(done=facts.owner == request.reviewer, winner=facts.owner, winner_action="took")
        await review_db.assign(conn, request.case_id, request.reviewer)
        if facts.status == CaseStatus.AWAITING_REVIEW:
            await transition(conn, request.case_id, CaseStatus.HUMAN_OWNED, actor_type=ActorType.REVIEWER,
                             actor_id=request.reviewer, note="taken by a reviewer")
    return ActionResult(done=True)


async def _resolve(pool: asyncpg.Pool, request: ActionRequest) -> ActionResult:
    """Mark resolved: the case is done, nothing is sent. Of two clicks the first resolves it and
    the second learns who did."""
    async with transaction(pool) as conn:
        facts = await _locked_facts(conn, request.case_id)
        if facts.status == CaseStatus.RESOLVED and facts.resolved_by is not None:  # a reviewer did
            return ActionResult(done=facts.resolved_by == request.reviewer, winner=facts.resolved_by,
                                winner_action="resolved", state=facts.status)
        if facts.status not in lifecycle_db.RESOLVABLE:
            return _late(facts)
        await lifecycle_db.resolve(conn, request.case_id, actor_type=ActorType.REVIEWER, actor_id=request.reviewer,
                                   note="marked resolved")
    return ActionResult(done=True)


# Our priorities as the tracker's: a critical case is Jira's Highest.
_TRACKER_PRIORITY: dict[str, TrackerPriority] = {"critical": "urgent", "high": "high", "medium": "medium", "low": "low"}


async def _escalate(pool: asyncpg.Pool, tracker: Tracker | None, request: ActionRequest) -> ActionResult:
    """File the case in the tracker once and mark it escalated. The first reviewer to click claims
    the escalation (a second is told who); the tracker call happens outside any transaction, and
    the tracker finds an issue it already filed for the case, so a retried job files nothing new."""
    if tracker is None:
        return ActionResult(done=False, refused="Jira is not configured (JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN)")
    async with transaction(pool) as conn:
        facts = await _locked_facts(conn, request.case_id)
        if facts.status not in REVIEWABLE:
            return _late(facts)
        # Claimed in the database before Jira is called: the tracker's own duplicate search lags
        # new issues by seconds, and two workers would both find nothing and both file one.
        holder = await review_db.claim_escalation(conn, request.case_id, request.reviewer)
    if holder != request.reviewer:
        return ActionResult(done=False, winner=holder, winner_action="escalated")
    escalation = Escalation(
        case_id=facts.case_id, short_id=f"CX-{facts.short_id}",
        summary=f"CX-{facts.short_id}: {facts.summary or facts.subject or 'escalated support case'}",
        description=facts.description, priority=_TRACKER_PRIORITY.get(facts.priority or "", "medium"),
        labels=tuple(label for label in ("cx-support", facts.category) if label),
        reporter_note=f"Escalated from Slack by reviewer {request.reviewer}",
    )
    try:
        issue = await tracker.escalate(escalation)
    except TrackerError as exc:
        if exc.retryable:
            raise
        async with transaction(pool) as conn:  # let someone try again
            await review_db.release_escalation(conn, request.case_id)
        return ActionResult(done=False, refused=f"Jira refused the issue: {exc.message}")
    async with transaction(pool) as conn:
        facts = await _locked_facts(conn, request.case_id)
        if facts.jira_issue_key is not None or facts.status not in REVIEWABLE:
            return _late(facts)
        await review_db.set_jira_issue(conn, request.case_id, issue.key)
        if facts.review_id is not None and facts.review_status == "pending":
            await review_db.decide(conn, facts.review_id, "escalated", request.reviewer, comments=issue.key)
        await review_db.add_feedback(conn, request.case_id, facts.review_id, "escalation", request.reviewer,
                                     comment=issue.key)
        await transition(conn, request.case_id, CaseStatus.ESCALATED, actor_type=ActorType.REVIEWER,
                         actor_id=request.reviewer, note=f"escalated to {issue.key}")
    return ActionResult(done=True)


async def _locked_facts(conn: Connection, case_id: UUID) -> CardFacts:
    # The case row lock orders this decision after any concurrent one (approve takes it too).
    facts = await review_db.card_facts(conn, case_id, lock=True)
    if facts is None:
        raise LookupError(f"no case {case_id}")
    return facts


async def _draft_sent(pool: asyncpg.Pool, draft_id: UUID) -> bool:
    async with pool.acquire() as conn:
        return await drafts_db.outgoing_for_draft(conn, draft_id) is not None


async def _reviewer_draft(pool: asyncpg.Pool, request: ActionRequest) -> UUID:
    """A case without an AI draft gets the reviewer's reply as its draft, to be approved as any other."""
    async with transaction(pool) as conn:
        return await drafts_db.save_draft(
            conn, request.case_id, body=request.reply or "", cited=[], dropped=[], confidence=1.0, questions=[],
            risks=[], drafter="reviewer", model=None, prompt_version=None, decision="review",
            reason=f"written by reviewer {request.reviewer}")


async def _learn_labels(conn: Connection, facts: CardFacts, request: ActionRequest) -> None:
    """Labels the reviewer changed are corrections: feedback for the triage step, the case's labels,
    and a labelled example the local triager's memories pick up on its next case (no retraining)."""
    changed = {field: (old, new) for field, old, new in (
        ("category", facts.category, request.category), ("subcategory", facts.subcategory, request.subcategory),
        ("priority", facts.priority, request.priority)) if new and new != old}
    if not changed:
        return
    for field, (old, new) in changed.items():
        await review_db.add_feedback(conn, facts.case_id, facts.review_id, "correction", request.reviewer,
                                     field=field, ai_value=old, human_value=new, agent_name="triage")
    await review_db.correct_labels(conn, facts.case_id, request.category, request.subcategory, request.priority)
    category = request.category or facts.category
    if category:
        # The text as the triager reads a case, so that the example matches what it will see.
        text = TriageInput(body=facts.description, subject=facts.subject).text
        await examples.add_examples(conn, [(text, category, request.subcategory or facts.subcategory,
                                            request.priority or facts.priority)],
                                    source="correction", case_id=facts.case_id)


class _Decided(Exception):
    def __init__(self, facts: CardFacts) -> None:
        self.facts = facts


def _late(facts: CardFacts) -> ActionResult:
    if facts.review_status not in (None, "pending"):
        return ActionResult(done=False, winner=facts.reviewed_by, winner_action=facts.review_status,
                            state=facts.status)
    return ActionResult(done=False, state=facts.status)


async def _too_late(pool: asyncpg.Pool, case_id: UUID) -> ActionResult:
    facts = await card_facts(pool, case_id)
    if facts is None:
        raise LookupError(f"no case {case_id}")
    return _late(facts)
