"""The triage step (workflow 1): classify a stored case, route it, and queue what comes next."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog

from db import executions
from db import triage as triage_db
from db.cases import ActorType, CaseNotFound, CaseStatus, transition
from db.pool import transaction
from pipelines.executions import failures_recorded
from pipelines.jobs import JobName
from pipelines.models import Route, RouteDecision, TriageResult
from pipelines.ports import TriageInput, Triager, TriageUnavailable
from pipelines.queue import queue_case_job
from pipelines.taxonomy import Taxonomy
from pipelines.triage.routing import Thresholds, decide_route
from pipelines.usage import record_usage

log = structlog.get_logger(__name__)

# Where each route leaves the case, and the jobs that take it from there.
_NEXT: dict[Route, tuple[CaseStatus, tuple[JobName, ...]]] = {
    Route.HUMAN_URGENT: (CaseStatus.HUMAN_OWNED, (JobName.URGENT_ALERT, JobName.REVIEW_CARD)),
    Route.SELF_SERVICE: (CaseStatus.DRAFTING, (JobName.DRAFT,)),
    Route.REVIEW: (CaseStatus.DRAFTING, (JobName.DRAFT,)),
    Route.HUMAN: (CaseStatus.HUMAN_OWNED, (JobName.REVIEW_CARD,)),
}


class LabelOutsideTaxonomy(ValueError):
    pass


@dataclass(frozen=True)
class TriageOutcome:
    case_id: UUID
    result: TriageResult | None  # None: no triager could answer, a person has the case
    decision: RouteDecision
    status: CaseStatus


def _input(case: triage_db.CaseForTriage) -> TriageInput:
    history = f"{case.earlier_cases} earlier cases" if case.earlier_cases else "no earlier cases"
    return TriageInput(
        body=case.description,
        subject=case.subject,
        case_id=case.case_id,
        tier=case.tier,
        severity=case.severity,
        product=case.product,
        channel=case.channel,
        history=history,
    )


async def triage_case(
    pool: asyncpg.Pool,
    triager: Triager,
    taxonomy: Taxonomy,
    thresholds: Thresholds,
    case_id: UUID,
) -> TriageOutcome | None:
    """Triage one case in `new`; None if it was triaged already (a retried job does nothing).
    When no triager can answer yet (a fresh install: no labelled history, no API key), the case
    goes to a person with the reason, instead of failing until its job is held."""
    async with pool.acquire() as conn:
        case = await triage_db.load(conn, case_id)
        if case is None:
            raise CaseNotFound(case_id)
        if case.status != CaseStatus.NEW:
            return None
        execution_id = await executions.start(conn, "triage", case_id)

    # No connection or lock is held while the model thinks.
    async with failures_recorded(pool, execution_id):
        try:
            triaged = await triager.triage(_input(case))
        except TriageUnavailable as missing:
            return await _to_a_person(pool, case, execution_id, missing)
        result = triaged.result
        if not taxonomy.is_valid(result.category, result.subcategory):
            raise LabelOutsideTaxonomy(f"{result.category}/{result.subcategory} is not in taxonomy {taxonomy.name}")

    decision = decide_route(result, case.tier, thresholds)
    status, next_jobs = _NEXT[decision.route]
    async with transaction(pool) as conn:
        current = await triage_db.load(conn, case_id, lock=True)
        if current is None or current.status != CaseStatus.NEW:
            await executions.finish(conn, execution_id, "skipped", metadata={"why": "triaged meanwhile"})
            return None
        await triage_db.save(
            conn,
            case_id,
            category=result.category,
            subcategory=result.subcategory,
            priority=result.priority,
            confidence=result.confidence,
            sentiment=result.sentiment,
            language=result.language,
            summary=result.summary,
            error_codes=result.error_codes,
            reason=result.reason,
            model=result.model,
            prompt_version=result.prompt_version,
            triager=result.triager,
            route=decision.route.value,
            route_reason=decision.reason,
        )
        actor = f"triage.{result.triager}"
        await transition(conn, case_id, CaseStatus.TRIAGED, actor_type=ActorType.AI, actor_id=actor,
                         note=f"{result.category}/{result.subcategory or '-'} at {result.confidence:.2f}")
        await transition(conn, case_id, status, actor_type=ActorType.SYSTEM, actor_id="router", note=decision.reason)
        for job in next_jobs:
            await queue_case_job(conn, job, case_id)
        await record_usage(conn, triaged.usage, case_id=case_id, execution_id=execution_id)
        await executions.finish(
            conn,
            execution_id,
            "success",
            metadata={"route": decision.route.value, "confidence": result.confidence, "triager": result.triager},
        )
    log.info(
        "triage.done",
        case=case.short_id,
        label=f"{result.category}/{result.subcategory}",
        confidence=round(result.confidence, 3),
        route=decision.route.value,
    )
    return TriageOutcome(case_id, result, decision, status)


async def _to_a_person(pool: asyncpg.Pool, case: triage_db.CaseForTriage, execution_id: UUID,
                       missing: TriageUnavailable) -> TriageOutcome | None:
    """No triager could answer: the case goes to a person, unlabelled, with the reason on its card."""
    decision = RouteDecision(route=Route.HUMAN, reason=str(missing)[:1000])
    async with transaction(pool) as conn:
        current = await triage_db.load(conn, case.case_id, lock=True)
        if current is None or current.status != CaseStatus.NEW:
            await executions.finish(conn, execution_id, "skipped", metadata={"why": "triaged meanwhile"})
            return None
        await triage_db.save_route(conn, case.case_id, route=decision.route.value, reason=decision.reason)
        await transition(conn, case.case_id, CaseStatus.HUMAN_OWNED, actor_type=ActorType.SYSTEM, actor_id="router",
                         note=decision.reason)
        await queue_case_job(conn, JobName.REVIEW_CARD, case.case_id)
        await record_usage(conn, missing.usage, case_id=case.case_id, execution_id=execution_id)
        await executions.finish(conn, execution_id, "success", metadata={"route": decision.route.value,
                                                                          "triager": None, "why": "no triage model"})
    log.warning("triage.no_model", case=case.short_id, reason=decision.reason)
    return TriageOutcome(case.case_id, None, decision, CaseStatus.HUMAN_OWNED)
