"""Claude's summary and root-cause hypothesis of a new incident: one call per alert, never in the
way of its post. The alert goes out with the detector's template summary; when Claude answers, its
summary replaces the template, the revision is bumped and the post job edits the message.

The model reads the detectors' figures and customers' words as quoted data and can only fill the
fields of IncidentSummary: nothing it says acknowledges, resolves, files or posts anything, and its
severity is advice (the detectors own the alert's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import structlog
from pydantic import BaseModel, Field, ValidationError

from db import executions, jobs
from db import incident_summary as summary_db
from db.pool import transaction
from pipelines.batching.calls import Deferred
from pipelines.executions import failures_recorded
from pipelines.jobs import AlertJob, JobName
from pipelines.ports import LLMError, StructuredLLM
from pipelines.privacy.policy import PiiPolicy
from pipelines.usage import failed_calls_recorded, record_usage
from prompts import Prompt, quote_data

log = structlog.get_logger(__name__)

STEP = "incident_summary"
EXAMPLE_CASES = 10
CASE_CHARS = 500
SUBJECT_CHARS = 200
TITLE_CHARS = 300
MAX_TOKENS = 1500
# A critical case's alert is about one case, whose triage summary it already shows; the urgent-alert
# job posts it and nothing edits it afterwards.
NOT_SUMMARISED = frozenset({"critical_case"})
# Summaries of these are wanted now; a warning's can wait for a Message Batch.
URGENT = frozenset({"critical", "high"})
# Signal figures in the order people read them; other keys follow, sorted.
_FIGURE_ORDER = ("severity", "category", "subcategory", "metric", "service", "error_code", "value", "unit",
                 "threshold", "observed", "expected", "z", "cases", "window_minutes", "fingerprint")
_RETRYABLE_STATUS = frozenset({408, 409, 429})

Action = Annotated[str, Field(min_length=1, max_length=200)]


class IncidentSummary(BaseModel):
    """What Claude may say about an incident, and nothing else."""

    summary: str = Field(min_length=1, max_length=600)
    root_cause_hypothesis: str = Field(min_length=1, max_length=600)
    customer_impact: str = Field(max_length=300)
    recommended_actions: list[Action] = Field(default_factory=list, max_length=5)
    severity_suggestion: Literal["critical", "high", "warning"]  # advice: never the alert's severity
    confidence: float = Field(ge=0.0, le=1.0)


async def summarise_incident(
    pool: asyncpg.Pool,
    llm: StructuredLLM,
    alert_id: UUID,
    *,
    model: str,
    system: Prompt,
    request: Prompt,
    post: bool,
    pii: PiiPolicy | None = None,
    bulk: StructuredLLM | None = None,
) -> bool:
    """Ask Claude once for the alert's summary and write it over the template; with `post`, queue
    the post job that shows it. An alert that is not urgent (a warning) asks `bulk` instead, when
    given: a Message Batch, whose call is queued and this job run again with its answer.

    False when nothing was written: the alert already has Claude's summary (no second call), is
    resolved, gone or of a kind not summarised, the call waits in a batch, or the answer was
    unusable (the template stays). A failure worth retrying (rate limit, overload, network) raises."""
    async with pool.acquire() as conn:
        incident = await summary_db.load_incident(conn, alert_id)
        if incident is None:
            log.warning("incident_summary.no_alert", alert_id=str(alert_id))
            return False
        if (incident.summary_source != "template" or incident.status == "resolved"
                or incident.alert_type in NOT_SUMMARISED):
            return False
        cases = await summary_db.example_cases(conn, alert_id, limit=EXAMPLE_CASES, chars=CASE_CHARS)
        execution_id = await executions.start(conn, STEP)

    user = request_text(request, incident, cases, pii)
    ask = llm if bulk is None or incident.severity in URGENT else bulk
    try:
        async with failures_recorded(pool, execution_id), failed_calls_recorded(pool, step=STEP):
            try:
                answer, usage = await ask.complete(
                    step=STEP, model=model, system=system.render(), user=user, output=IncidentSummary,
                    max_tokens=MAX_TOKENS, prompt_version=system.ref,
                )
            except Deferred:
                async with pool.acquire() as conn:
                    await executions.finish(conn, execution_id, "skipped",
                                            metadata={"alert_id": str(alert_id), "deferred": "message batch"})
                return False
    except LLMError as exc:
        if worth_retrying(exc):
            raise
        log.warning("incident_summary.dropped", alert_id=str(alert_id), error=str(exc))
        return False

    details = answer.model_dump(exclude={"summary", "root_cause_hypothesis"}) | {
        "model": usage.model, "prompt_version": system.ref,
    }
    async with transaction(pool) as conn:
        revision = await summary_db.save_summary(
            conn, alert_id, summary=answer.summary, hypothesis=answer.root_cause_hypothesis, details=details,
        )
        await record_usage(conn, [usage], execution_id=execution_id)
        if revision is not None and post:
            await jobs.enqueue(conn, JobName.ALERT_POST, AlertJob(alert_id=alert_id).payload(),
                               dedupe_key=f"{JobName.ALERT_POST}:{alert_id}")
        await executions.finish(
            conn, execution_id, "success" if revision is not None else "skipped",
            metadata={"alert_id": str(alert_id), "revision": revision,
                      "severity_suggestion": answer.severity_suggestion, "confidence": answer.confidence},
        )
    log.info("incident_summary.done", alert_id=str(alert_id), written=revision is not None,
             severity=incident.severity, suggested=answer.severity_suggestion)
    return revision is not None


def worth_retrying(exc: LLMError) -> bool:
    """Whether the same call may succeed later: a timeout, a dropped connection, a rate limit or an
    overloaded or failing server. An answer that did not fit, a refusal (no tool call) or a
    request the API refuses (bad key, too large) would fail the same way again."""
    cause = exc.__cause__
    if cause is None or isinstance(cause, ValidationError):
        return False
    # The SDK's status errors carry the HTTP status; its connection errors and timeouts carry none.
    status = getattr(cause, "status_code", None)
    if isinstance(status, int):
        return status in _RETRYABLE_STATUS or status >= 500
    return True


def request_text(request: Prompt, incident: summary_db.Incident, cases: list[summary_db.ExampleCase],
                 pii: PiiPolicy | None = None) -> str:
    """The user turn: every value that came from outside is quoted data inside the prompt's tags,
    customers' words with their personal data redacted (a summary is never filled back)."""
    if pii is not None:
        cases = [replace(c, subject=pii.redact(c.subject).text if c.subject else None,
                         description=pii.redact(c.description).text) for c in cases]
        incident = replace(incident, title=pii.redact(incident.title).text)
    if not cases:
        shown = "It has no cases as evidence"
    elif len(cases) < incident.case_count:
        shown = f"The {len(cases)} newest of its {incident.case_count} cases, as the customers wrote them"
    else:
        shown = f"Its {len(cases)} case{'s' if len(cases) > 1 else ''}, as the customers wrote them"
    shown += f" (each cut to {CASE_CHARS} characters)" if cases else ""
    return request.render(
        kind=incident.alert_type,
        severity=incident.severity,
        title=_line(incident.title, TITLE_CHARS),
        first_seen=_when(incident.first_seen_at),
        last_seen=_when(incident.last_seen_at),
        evidence_count=str(incident.occurrence_count),
        case_count=str(incident.case_count),
        customers=_customers(incident.tiers),
        signals="\n".join(_signal(s) for s in incident.signals) or "(none recorded)",
        shown=shown,
        cases="\n".join(_case(c) for c in cases) or "(none)",
    )


def _signal(signal: Mapping[str, Any]) -> str:
    kind = _line(str(signal.get("kind") or "signal"), 40)
    title = _line(str(signal.get("title") or ""), TITLE_CHARS)
    keys = [k for k in _FIGURE_ORDER if k in signal] + sorted(set(signal) - set(_FIGURE_ORDER) - {"kind", "title"})
    figures = ", ".join(f"{_line(k, 40)} {_figure(signal[k])}" for k in keys
                        if signal[k] is not None and not isinstance(signal[k], dict | list))
    return f"- {kind}: {title} ({figures})" if figures else f"- {kind}: {title}"


def _figure(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return _line(str(value), 120)


def _case(case: summary_db.ExampleCase) -> str:
    labels = "/".join(x for x in (case.category, case.subcategory) if x) or "not triaged"
    head = (f"CX-{case.short_id} · {case.tier} customer · priority {case.priority or '-'} · "
            f"{_line(labels, 80)} · opened {_when(case.created_at)}")
    subject = _line(case.subject or "(none)", SUBJECT_CHARS)
    body = quote_data(_cut(case.description) if case.cut else case.description.strip())
    return f"<case>\n{head}\nSubject: {subject}\n\n{body}\n</case>"


def _customers(tiers: Mapping[str, int]) -> str:
    total = sum(tiers.values())
    if not total:
        return "none recorded"
    split = ", ".join(f"{n} {tier}" for tier, n in sorted(tiers.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} ({split})"


def _line(text: str, limit: int) -> str:
    """Outside text on one line of the prompt, quoted and bounded."""
    flat = " ".join(text.split())
    return quote_data(flat if len(flat) <= limit else _cut(flat[:limit]))


def _cut(text: str) -> str:
    """A description that was cut: end at the last whole word, and say so."""
    head, space, _ = text.rpartition(" ")
    return (head if space and len(head) > len(text) // 2 else text).rstrip() + " …"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()
