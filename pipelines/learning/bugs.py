"""Repeated defects become Jira bugs: each group of at least `min_cases` similar cases in a defect
category over the last `days` files one Bug, labelled with the group's fingerprint; the next days
comment the group's new cases on that Bug instead of filing another.

A group keeps its fingerprint while the window slides: today's group takes the open recurring issue
it shares the most cases with, else the one whose centroid lies within the clustering threshold of
its own, else (a genuinely new defect) a new fingerprint named after its oldest case. Before filing,
the tracker is searched for the label, so a run that filed but died before recording finds its Bug
again. Without a tracker, the groups are recorded and nothing is filed."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg
import numpy as np
import structlog
from pydantic import BaseModel

from db import bugs as db
from db.locks import transaction_lock
from db.pool import transaction
from pipelines.detection.clusters import similarity_for
from pipelines.learning.case_groups import CaseGroup, group_recent_cases
from pipelines.ports import BugComment, BugReport, BugTracker, Embedder
from pipelines.triage.text_signals import error_codes as codes_in

log = structlog.get_logger(__name__)

_QUOTED = 5  # customer texts quoted per report or comment
_QUOTE_CHARS = 600
_LISTED = 200  # case references listed per report or comment

Action = Literal["filed", "found", "commented", "unchanged", "recorded"]


class BugFiling(BaseModel):
    """What one run did for one group."""

    fingerprint: str  # the Jira label
    title: str
    case_ids: list[UUID]  # the group's cases in this window, newest first
    new_case_ids: list[UUID]  # those not reported on the bug before
    issue_key: str | None
    # filed: a new Bug; found: the Bug carrying the label was there already (an earlier run died
    # before recording it); commented: new cases added; unchanged: nothing new; recorded: no tracker.
    action: Action


async def file_defect_bugs(pool: asyncpg.Pool, tracker: BugTracker | None, embedder: Embedder | None, *,
                           until: datetime, days: int = 7, min_cases: int,
                           categories: frozenset[str]) -> list[BugFiling]:
    since = until - timedelta(days=days)
    groups = await group_recent_cases(pool, embedder, since=since, until=until, min_size=min_cases,
                                      categories=categories)
    similarity = similarity_for(embedder.model) if embedder is not None else None
    taken: set[str] = set()
    filings = []
    for group in groups:
        # One transaction per group: a Bug filed is recorded before the next group's call can fail.
        async with transaction(pool) as conn:
            await transaction_lock(conn, "defect_bugs")  # one run at a time matches and files
            known = _match(group, await db.open_bugs(conn), taken, similarity)
            fingerprint = known.fingerprint if known is not None else _new_fingerprint(group)
            taken.add(fingerprint)
            reported = known.case_ids if known is not None else frozenset()
            new = [c for c in group.case_ids if c not in reported]
            cases = await db.bug_cases(conn, list(group.case_ids))
            key = known.jira_issue_key if known is not None else None
            action: Action
            if tracker is None:
                action = "recorded"
            elif key is None:
                found = await tracker.find_by_label(fingerprint)
                if found is None:
                    found = await tracker.file_bug(_report(fingerprint, group, cases, days=days, until=until))
                    action = "filed"
                else:
                    action = "found"
                key = found.key
            elif new:
                fresh = set(new)
                await tracker.comment(key, _update(fingerprint, group, [c for c in cases if c.case_id in fresh],
                                                   days=days))
                action = "commented"
            else:
                action = "unchanged"
            await db.record_bug(conn, db.BugRecord(
                fingerprint=fingerprint, title=group.title,
                description=f"{len(group.case_ids)} similar cases in the {days} days to {until.isoformat()}",
                category=group.category, subcategory=group.subcategory,
                case_ids=list(group.case_ids), jira_issue_key=key, detected_at=until,
                metadata={"label": fingerprint, "error_codes": _codes(cases)}
                | ({"centroid": np.round(group.centroid, 5).tolist()} if group.centroid is not None else {}),
            ))
        filings.append(BugFiling(fingerprint=fingerprint, title=group.title, case_ids=list(group.case_ids),
                                 new_case_ids=new, issue_key=key, action=action))
        log.info("bugs.group", fingerprint=fingerprint, action=action, cases=len(group.case_ids), new=len(new),
                 issue=key)
    if tracker is None:
        log.warning("bugs.no_tracker", groups=len(groups),
                    reason="Jira is not configured (JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN): recorded, not filed")
    return filings


def _match(group: CaseGroup, open_bugs: list[db.OpenBug], taken: set[str],
           similarity: float | None) -> db.OpenBug | None:
    """The open bug this group continues, if any: the one of its fingerprint, else the one it shares
    the most cases with, else the one whose centroid is nearest within `similarity`."""
    free = [b for b in open_bugs if b.fingerprint not in taken]
    same = next((b for b in free if b.fingerprint == _new_fingerprint(group)), None)
    if same is not None:
        return same
    members = set(group.case_ids)
    shared = max(free, key=lambda b: len(members & b.case_ids), default=None)
    if shared is not None and members & shared.case_ids:
        return shared
    if group.centroid is None or similarity is None:
        return None
    near = [(float(np.dot(group.centroid, np.asarray(b.centroid, dtype=np.float32))), b)
            for b in free if b.centroid is not None and len(b.centroid) == len(group.centroid)]
    best = max(near, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= similarity else None


def _new_fingerprint(group: CaseGroup) -> str:
    """A similarity group is named after its oldest case, which stays in it while the window slides
    over the days it covers; a category group after its category."""
    seed = str(group.case_ids[-1]) if group.centroid is not None else f"{group.category}/{group.subcategory}"
    return "cx-bug-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def _report(fingerprint: str, group: CaseGroup, cases: list[db.BugCase], *, days: int, until: datetime) -> BugReport:
    kind = " / ".join(v for v in (group.category, group.subcategory) if v) or "untriaged"
    return BugReport(label=fingerprint, summary=f"Recurring defect: {group.title}", sections=(
        ("What customers report", group.title),
        ("How many", f"{len(cases)} similar cases in the {days} days to {until:%Y-%m-%d %H:%M %Z} ({kind}); "
                     f"first {min(c.created_at for c in cases):%Y-%m-%d %H:%M}, "
                     f"latest {max(c.created_at for c in cases):%Y-%m-%d %H:%M}."),
        *_evidence(cases),
    ))


def _update(fingerprint: str, group: CaseGroup, new: list[db.BugCase], *, days: int) -> BugComment:
    digest = hashlib.sha256(",".join(sorted(str(c.case_id) for c in new)).encode()).hexdigest()[:12]
    # Plain words: brackets would make a link in Jira's markup.
    return BugComment(marker=f"CX-Catalyst update {fingerprint} {digest}", sections=(
        ("New cases", f"{len(new)} new cases; {len(group.case_ids)} similar cases in the last {days} days."),
        *_evidence(new),
    ))


def _evidence(cases: list[db.BugCase]) -> tuple[tuple[str, str], ...]:
    listed = "\n".join(f"CX-{c.short_id}  {c.created_at:%Y-%m-%d %H:%M}  {_line(c.subject or c.text)}"
                       for c in cases[:_LISTED])
    if len(cases) > _LISTED:
        listed += f"\n… and {len(cases) - _LISTED} more"
    quoted = "\n\n".join("\n".join(line for line in (f"CX-{c.short_id}:", (c.subject or "").strip(),
                                                     c.text.strip()[:_QUOTE_CHARS]) if line)
                         for c in cases[:_QUOTED])
    codes = _codes(cases)
    return (
        ("Cases", listed),
        (f"What the newest {min(len(cases), _QUOTED)} customers wrote", quoted),
        ("Error codes seen", ", ".join(f"{code} ({n})" for code, n in codes.items()) or "none"),
    )


def _codes(cases: list[db.BugCase]) -> dict[str, int]:
    """Each error code the cases carry or quote, with how many cases, the most frequent first."""
    counts: dict[str, int] = {}
    for case in cases:
        for code in set(case.error_codes) | set(codes_in(f"{case.subject or ''}\n{case.text}")):
            counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _line(text: str) -> str:
    return " ".join(text.split())[:100]
