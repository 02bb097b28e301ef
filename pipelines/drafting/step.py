"""The drafting step (workflow 2): retrieve, draft a cited reply, apply the auto-send policy, and
either queue the reply or hand the case to a reviewer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import structlog

from db import drafts as drafts_db
from db import executions, pii_maps
from db.cases import ActorType, CaseNotFound, CaseStatus, transition
from db.pool import transaction
from pipelines.drafting.house_style import house_examples
from pipelines.drafting.injection import instruction_signs
from pipelines.drafting.send_policy import PolicyDecision, PolicyInput, decide
from pipelines.executions import failures_recorded
from pipelines.jobs import JobName
from pipelines.kb.search import Hit, search
from pipelines.ports import Draft, Drafter, DraftInput, Embedder, SimilarCase
from pipelines.privacy.policy import PiiPolicy, unresolved
from pipelines.queue import queue_case_job
from pipelines.replies import outbox as replies
from pipelines.taxonomy import Taxonomy
from pipelines.usage import record_usage

log = structlog.get_logger(__name__)

ARTICLES = 5
SIMILAR = 2  # resolved cases of the subcategory shown for their facts; house_style.py gives the tone


@dataclass(frozen=True)
class DraftPolicy:
    high: float
    always_review_tiers: frozenset[str]
    sender: replies.Sender
    pii: PiiPolicy | None = None  # None: PII_REDACTION off
    auto_replies_per_day: int | None = None  # per customer (AUTO_REPLIES_PER_CUSTOMER_PER_DAY); None: no limit


@dataclass(frozen=True)
class DraftOutcome:
    case_id: UUID
    draft_id: UUID
    draft: Draft
    hits: list[Hit]
    decision: PolicyDecision
    status: CaseStatus


async def draft_case(
    pool: asyncpg.Pool,
    drafter: Drafter,
    embedder: Embedder | None,
    taxonomy: Taxonomy,
    policy: DraftPolicy,
    case_id: UUID,
    *,
    multilingual: Embedder | None = None,
) -> DraftOutcome | None:
    """Draft a reply for a case in `drafting`; None if it has moved on (a retried job does nothing)."""
    async with pool.acquire() as conn:
        case = await drafts_db.load_case(conn, case_id)
        if case is None:
            raise CaseNotFound(case_id)
        if case.status != CaseStatus.DRAFTING:
            return None
        execution_id = await executions.start(conn, "draft", case_id)
        similar = [SimilarCase(d, r) for d, r in await drafts_db.similar_resolved(conn, case_id, case.subcategory,
                                                                                   limit=SIMILAR)]
        known = await pii_maps.load(conn, case_id)
        examples = await house_examples(conn, datetime.now(UTC)) if drafter.wants_house_examples else ()
    private = _redacted(case, similar, policy.pii, known)

    async with failures_recorded(pool, execution_id):
        subject, body = private.input.subject, private.input.body
        query = f"{subject}\n{body}" if subject else body
        hits = await search(pool, embedder, query[:2000], ARTICLES, prefer_subcategory=case.subcategory,
                            case_id=case_id, multilingual=multilingual)
        draft = await drafter.draft(replace(private.input, articles=hits, house_examples=examples))

    category = taxonomy.categories.get(case.category or "")
    facts = PolicyInput(
        triage_confidence=case.confidence or 0.0, draft_confidence=draft.confidence, category=case.category,
        category_auto_send=bool(category and category.auto_send), tier=case.tier,
        valid_citations=len(draft.cited), drafter=draft.drafter, risks=tuple(draft.risks),
        questions=tuple(draft.questions), unresolved=tuple(unresolved(draft.reply, private.mapping)),
        instructions=tuple(instruction_signs(f"{case.subject or ''}\n{case.description}")),
    )
    async with transaction(pool) as conn:
        current = await drafts_db.load_case(conn, case_id, lock=True)
        if current is None or current.status != CaseStatus.DRAFTING:
            await executions.finish(conn, execution_id, "skipped", metadata={"why": "case moved on meanwhile"})
            return None
        # Counted here, under the customer's lock, in the transaction that queues the reply.
        sent_today = await drafts_db.auto_replies_today(conn, case_id)
        decision = decide(replace(facts, auto_replies_today=sent_today), high=policy.high,
                          always_review_tiers=policy.always_review_tiers, max_auto_replies=policy.auto_replies_per_day)
        draft_id = await drafts_db.save_draft(
            conn, case_id, body=draft.reply, cited=draft.cited, dropped=draft.dropped, confidence=draft.confidence,
            questions=draft.questions, risks=draft.risks, drafter=draft.drafter, model=draft.model,
            prompt_version=draft.prompt_version, decision="auto_send" if decision.auto_send else "review",
            reason=decision.reason,
        )
        await pii_maps.merge(conn, case_id, private.mapping)
        actor = f"draft.{draft.drafter}"
        if decision.auto_send:
            await replies.queue_reply(conn, current, draft_id, draft.reply, policy.sender, approved_by=None)
            status = CaseStatus.SENDING
            await transition(conn, case_id, status, actor_type=ActorType.AI, actor_id=actor, note=decision.reason)
        else:
            status = CaseStatus.AWAITING_REVIEW
            await transition(conn, case_id, status, actor_type=ActorType.AI, actor_id=actor, note=decision.reason)
            await queue_case_job(conn, JobName.REVIEW_CARD, case_id)
        await record_usage(conn, draft.usage, case_id=case_id, execution_id=execution_id)
        await executions.finish(conn, execution_id, "success", metadata={
            "decision": "auto_send" if decision.auto_send else "review", "confidence": draft.confidence,
            "cited": len(draft.cited), "dropped": len(draft.dropped), "drafter": draft.drafter,
        })
    log.info("draft.done", case=case.ref, drafter=draft.drafter, cited=len(draft.cited),
             auto_send=decision.auto_send, reason=decision.reason)
    return DraftOutcome(case_id, draft_id, draft, hits, decision, status)


@dataclass(frozen=True)
class _Private:
    input: DraftInput  # what the drafter (and so the provider) sees
    mapping: dict[str, str]  # the case's map, with what this draft added


def _redacted(case: drafts_db.CaseForDraft, similar: list[SimilarCase], pii: PiiPolicy | None,
              known: dict[str, str]) -> _Private:
    """The drafter's input with personal data replaced, numbered on from the case's stored map so a
    placeholder means the same value in every message and draft of the case."""
    item = DraftInput(case_ref=case.ref, subject=case.subject, body=case.description,
                      customer_name=case.customer_name, tier=case.tier, category=case.category,
                      subcategory=case.subcategory, priority=case.priority, articles=[], similar=similar)
    if pii is None:
        return _Private(item, known)
    mapping = dict(known)

    def private(text: str) -> str:
        nonlocal mapping
        redacted = pii.redact(text, mapping)
        mapping = redacted.mapping
        return redacted.text

    # Subject, body, name, in that order: the numbering Claude's triage saw for the case.
    subject = private(item.subject) if item.subject else item.subject
    body = private(item.body)
    name = private(item.customer_name) if item.customer_name else item.customer_name
    # Other customers' values are numbered past this case's and never stored: a draft that copies
    # one holds a placeholder the map cannot fill, and so goes to review.
    others = [SimilarCase(pii.redact(s.description, mapping).text, pii.redact(s.reply, mapping).text)
              for s in similar]
    return _Private(replace(item, subject=subject, body=body, customer_name=name, similar=others), mapping)

