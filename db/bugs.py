"""Recurring defects filed as bugs: their improvement_opportunities rows (type recurring_issue),
one open row per fingerprint, and the cases a bug report quotes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from db.connection import Connection


@dataclass(frozen=True)
class OpenBug:
    opportunity_id: UUID
    fingerprint: str  # also the Jira label
    jira_issue_key: str | None
    case_ids: frozenset[UUID]  # every case reported on the issue so far
    centroid: list[float] | None  # the group's unit vector when it was last seen


async def open_bugs(conn: Connection) -> list[OpenBug]:
    """The recurring issues still open, oldest first."""
    rows = await conn.fetch(
        """
        SELECT opportunity_id, fingerprint, jira_issue_key, case_ids, metadata->'centroid' AS centroid
        FROM improvement_opportunities
        WHERE opportunity_type = 'recurring_issue' AND status IN ('identified', 'in_progress')
        ORDER BY first_detected_at, opportunity_id
        """,
    )
    return [OpenBug(r["opportunity_id"], r["fingerprint"], r["jira_issue_key"], frozenset(r["case_ids"]),
                    json.loads(r["centroid"]) if r["centroid"] else None) for r in rows]


@dataclass(frozen=True)
class BugCase:
    case_id: UUID
    short_id: int
    created_at: datetime
    subject: str | None
    text: str  # the start of the description
    error_codes: list[str]


async def bug_cases(conn: Connection, case_ids: list[UUID]) -> list[BugCase]:
    """The cases, newest first."""
    rows = await conn.fetch(
        """
        SELECT case_id, short_id, created_at, subject, left(description, 1000) AS text, error_codes
        FROM cases WHERE case_id = ANY($1::uuid[]) ORDER BY created_at DESC, case_id
        """,
        case_ids,
    )
    return [BugCase(*r) for r in rows]  # the columns in the fields' order


@dataclass(frozen=True)
class BugRecord:
    fingerprint: str
    title: str
    description: str
    category: str | None
    subcategory: str | None
    case_ids: list[UUID]  # the cases now reported: added to those already recorded
    jira_issue_key: str | None
    detected_at: datetime
    metadata: dict[str, Any]  # merged into the row's


async def record_bug(conn: Connection, bug: BugRecord) -> UUID:
    """Open the fingerprint's row, or bring the open one up to date: its cases are the union of
    those recorded and `case_ids`, its frequency their count; a key once recorded stays."""
    opportunity_id: UUID = await conn.fetchval(
        """
        INSERT INTO improvement_opportunities AS io
            (opportunity_type, fingerprint, title, description, category, subcategory, frequency, case_ids,
             jira_issue_key, first_detected_at, last_detected_at, metadata)
        VALUES ('recurring_issue', $1, $2, $3, $4, $5, cardinality($6::uuid[]), $6::uuid[], $7, $8, $8, $9::jsonb)
        ON CONFLICT (opportunity_type, fingerprint) WHERE status IN ('identified', 'in_progress') DO UPDATE SET
            title = excluded.title, description = excluded.description,
            category = coalesce(excluded.category, io.category),
            subcategory = coalesce(excluded.subcategory, io.subcategory),
            case_ids = ARRAY(SELECT DISTINCT unnest(io.case_ids || excluded.case_ids)),
            frequency = cardinality(ARRAY(SELECT DISTINCT unnest(io.case_ids || excluded.case_ids))),
            jira_issue_key = coalesce(io.jira_issue_key, excluded.jira_issue_key),
            last_detected_at = greatest(io.last_detected_at, excluded.last_detected_at),
            metadata = io.metadata || excluded.metadata, updated_at = now()
        RETURNING opportunity_id
        """,
        bug.fingerprint, bug.title, bug.description, bug.category, bug.subcategory, bug.case_ids,
        bug.jira_issue_key, bug.detected_at, json.dumps(bug.metadata),
    )
    return opportunity_id
