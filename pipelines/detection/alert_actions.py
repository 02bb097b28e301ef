"""A reviewer's click on an alert: Acknowledge, Create Jira, Resolve. The click is queued before
Slack's ack (a redelivered one is dropped), then applied in a job under the alert's row lock, so of
two reviewers acting at once exactly one wins and the other learns who did. Create Jira files one
issue per alert: the first click claims it in the database before the tracker is called, so neither
a second reviewer nor a second worker files another."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from db import incident_alerts as incident_db
from db.connection import Connection
from db.pool import transaction
from pipelines.detection.posting import Affected, AlertCase, AlertFacts, signal_figures
from pipelines.jobs import AlertAction, AlertActionRequest
from pipelines.ports import AlertIssue, AlertTracker, TrackerError, TrackerPriority

# The issue lists the alert's cases by id; past this many it says how many more there are.
ISSUE_CASES = 200
ISSUE_NAMES = 20
_SUBJECT_MAX = 120

_TRACKER_PRIORITY: dict[str, TrackerPriority] = {
    "critical": "urgent", "high": "high", "warning": "medium", "medium": "medium", "low": "low",
}


class Done(StrEnum):
    """What was done to the alert, by whoever came first."""

    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FILED_JIRA = "filed_jira"
    FILING_JIRA = "filing_jira"  # claimed, the tracker not answered yet


@dataclass(frozen=True)
class AlertActionResult:
    done: bool  # the click took effect (or its own author had already done the same)
    winner: str | None = None  # when it did not: who acted first (a Slack user id, or "auto")
    winner_did: Done | None = None
    at: datetime | None = None
    issue_key: str | None = None
    refused: str | None = None  # an outside service said no, or is not set up: why



async def apply(pool: asyncpg.Pool, request: AlertActionRequest, tracker: AlertTracker | None) -> AlertActionResult:
    if request.action is AlertAction.ACKNOWLEDGE:
        return await _acknowledge(pool, request)
    if request.action is AlertAction.RESOLVE:
        return await _resolve(pool, request)
    return await _create_jira(pool, request, tracker)


async def _acknowledge(pool: asyncpg.Pool, request: AlertActionRequest) -> AlertActionResult:
    async with transaction(pool) as conn:
        facts = await _locked(conn, request.alert_id)
        if await incident_db.acknowledge(conn, request.alert_id, request.reviewer):
            return AlertActionResult(done=True)
    return _late(facts, request.reviewer)


async def _resolve(pool: asyncpg.Pool, request: AlertActionRequest) -> AlertActionResult:
    async with transaction(pool) as conn:
        facts = await _locked(conn, request.alert_id)
        if await incident_db.resolve(conn, request.alert_id, request.reviewer):
            return AlertActionResult(done=True)
    return _late(facts, request.reviewer)


async def _create_jira(pool: asyncpg.Pool, request: AlertActionRequest,
                       tracker: AlertTracker | None) -> AlertActionResult:
    """The tracker is called outside any transaction, after the claim committed; it finds an issue
    it already filed for the alert (by label), so a retried job of the claimant files nothing new."""
    if tracker is None:
        return AlertActionResult(done=False, refused="Jira is not configured (JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN).")
    async with transaction(pool) as conn:
        facts = await _locked(conn, request.alert_id)
        if facts.jira_issue_key is not None:
            return AlertActionResult(done=facts.jira_claim == request.reviewer, winner=facts.jira_claim,
                                     winner_did=Done.FILED_JIRA, issue_key=facts.jira_issue_key)
        holder = await incident_db.claim_jira(conn, request.alert_id, request.reviewer)
        if holder != request.reviewer:
            return AlertActionResult(done=False, winner=holder, winner_did=Done.FILING_JIRA)
        cases = await incident_db.alert_cases(conn, request.alert_id, ISSUE_CASES)
        affected = await incident_db.affected(conn, request.alert_id, ISSUE_NAMES)
    try:
        issue = await tracker.file_alert(alert_issue(facts, cases, affected, request.reviewer))
    except TrackerError as exc:
        if exc.retryable:
            raise  # the job is retried; the claim is still this reviewer's
        async with transaction(pool) as conn:  # let someone try again
            await incident_db.release_jira(conn, request.alert_id)
        return AlertActionResult(done=False, refused=f"Jira refused the issue: {exc.message}")
    async with transaction(pool) as conn:
        facts = await _locked(conn, request.alert_id)
        if facts.jira_issue_key is None:
            await incident_db.save_jira_issue(conn, request.alert_id, issue.key)
    return AlertActionResult(done=True, issue_key=issue.key)


def alert_issue(facts: AlertFacts, cases: list[AlertCase], affected: Affected, reviewer: str) -> AlertIssue:
    """The alert as its Jira issue: what fired and its figures, the summary, and every case by id."""
    about = [
        f"Kind: {facts.kind}", f"Severity: {facts.severity}", f"Status: {facts.status}",
        f"First seen: {facts.first_seen_at.isoformat(timespec='minutes')}",
        f"Last seen: {facts.last_seen_at.isoformat(timespec='minutes')}",
        f"Alert id: {facts.alert_id}", f"Filed from Slack by reviewer {reviewer}",
    ]
    sections: list[tuple[str, str]] = [("Alert", "\n".join(about))]
    if facts.description and facts.description.strip():
        sections.append(("Summary", facts.description))
    if facts.hypothesis and facts.hypothesis.strip():
        sections.append(("Root-cause hypothesis (AI, unverified)", facts.hypothesis))
    if facts.signals:
        lines = [f"- {s.get('kind', 'signal')}: {signal_figures(s) or s.get('title') or 'no figures'}"
                 for s in facts.signals]
        sections.append(("What fired", "\n".join(lines)))
    if cases:
        lines = [f"CX-{c.short_id}  {c.case_id}  {_one_line(c.subject or '', _SUBJECT_MAX)}".rstrip() for c in cases]
        if facts.case_count > len(cases):
            lines.append(f"… and {facts.case_count - len(cases)} more")
        sections.append((f"Cases ({facts.case_count})", "\n".join(lines)))
    if affected.total:
        tiers = ", ".join(f"{n} {tier}" for tier, n in sorted(affected.tiers.items()))
        names = "\n".join(f"{name} ({tier})" for name, tier in affected.names)
        sections.append((f"Customers affected ({affected.total})", f"{tiers}\n{names}"))
    labels = tuple(label for label in ("cx-alert", facts.kind, facts.category) if label)
    return AlertIssue(alert_id=facts.alert_id, summary=f"[{facts.severity}] {facts.title}", sections=tuple(sections),
                      priority=_TRACKER_PRIORITY.get(facts.severity, "medium"), labels=labels)


async def _locked(conn: Connection, alert_id: UUID) -> AlertFacts:
    facts = await incident_db.alert(conn, alert_id, lock=True)
    if facts is None:
        raise LookupError(f"no alert {alert_id}")
    return facts


def _late(facts: AlertFacts, reviewer: str) -> AlertActionResult:
    """The click came after someone else's: who did what, and when. A repeat of one's own is no loss."""
    if facts.status == "resolved":
        return AlertActionResult(done=facts.resolved_by == reviewer, winner=facts.resolved_by,
                                 winner_did=Done.RESOLVED, at=facts.resolved_at)
    return AlertActionResult(done=facts.acknowledged_by == reviewer, winner=facts.acknowledged_by,
                             winner_did=Done.ACKNOWLEDGED, at=facts.acknowledged_at)


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
