"""One detection pass as of `now`: read the window and its baselines, run every detector, correlate
the signals into incidents, and bring the alerts up to date (open, add evidence, resolve the quiet
ones, remind). Slack sees the result through jobs queued in the same transaction; nothing here
waits for Slack or for Claude."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar, overload
from uuid import UUID

import asyncpg
import numpy as np
import structlog

from db import case_import as case_import_db
from db import detection as db
from db import jobs
from db.connection import Connection
from db.locks import transaction_lock
from db.pool import transaction
from pipelines.detection.clusters import BaselineSample, WindowCases, detect_clusters, similarity_for
from pipelines.detection.error_codes import detect_error_codes
from pipelines.detection.incidents import correlate, describe
from pipelines.detection.metrics import detect_metrics
from pipelines.detection.signals import Incident, Kind, Severity, Signal, Thresholds, worst
from pipelines.detection.volume import HOURS_OF_WEEK, VolumeBaseline, detect_volume
from pipelines.embedding_backfill import backfill
from pipelines.jobs import AlertJob, JobName, SummaryJob
from pipelines.ports import Embedder
from pipelines.triage.text_signals import error_codes as codes_in

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

Outcome = Literal["new", "updated", "unchanged", "resolved"]
_EMBED_BATCH = 256
_EMBED_MAX = 20_000  # per pass: a backlog larger than this is embedded over the next passes


@dataclass(frozen=True)
class DetectConfig:
    window: timedelta = timedelta(minutes=60)
    cluster_window: timedelta = timedelta(hours=24)
    baseline_days: int = 30
    thresholds: Thresholds = Thresholds()
    resolve_after: timedelta = timedelta(minutes=120)
    repeat_after: timedelta = timedelta(hours=4)
    similarity: float | None = None  # None: the embedding model's own
    baseline_sample: int = 20_000
    # Cases this recent can start a cluster; older ones only join one. Every case is a seed in
    # some pass while it is this recent, so no cluster is missed, and a pass stays cheap.
    seed_window: timedelta = timedelta(hours=2)


@dataclass
class DetectReport:
    now: datetime
    outcomes: dict[UUID, Outcome] = field(default_factory=dict)
    alerts: list[db.AlertRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signals: int = 0


async def run_detection(pool: asyncpg.Pool, config: DetectConfig, now: datetime, embedder: Embedder | None, *,
                        post: bool, summarise: bool) -> DetectReport:
    report = DetectReport(now)
    if embedder is not None:
        await embed_recent_cases(pool, embedder, now - config.cluster_window, now)
    async with pool.acquire() as reader, reader.transaction(isolation="repeatable_read", readonly=True):
        signals = await _signals(reader, config, now, embedder, report)
    report.signals = len(signals)
    incidents = correlate(signals)
    async with transaction(pool) as conn:
        await transaction_lock(conn, "detection")  # one pass at a time writes alerts
        await _apply(conn, incidents, config, now, report, post=post, summarise=summarise)
        report.alerts = await db.alerts_by_id(conn, list(report.outcomes))
    log.info("detect.pass", now=now.isoformat(), signals=len(signals), incidents=len(incidents),
             **{k: sum(1 for v in report.outcomes.values() if v == k) for k in ("new", "updated", "resolved")})
    return report


async def embed_recent_cases(pool: asyncpg.Pool, embedder: Embedder, start: datetime, end: datetime) -> int:
    """Embed the window's cases that have no vector yet (new cases, or cases from before embeddings),
    at most _EMBED_MAX a pass."""
    async def pending(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
        return await db.cases_without_vectors(conn, start, end, embedder.model, limit)

    async def store(conn: Connection, ids: Sequence[UUID], vectors: np.ndarray) -> None:
        await case_import_db.set_embeddings(conn, ids, vectors, embedder.model)

    done = 0

    async def capped(conn: Connection, limit: int) -> list[tuple[UUID, str]]:
        nonlocal done
        todo = await pending(conn, min(limit, _EMBED_MAX - done)) if done < _EMBED_MAX else []
        done += len(todo)
        return todo

    return await backfill(pool, embedder, capped, store, batch=_EMBED_BATCH, step="case_embed")


async def _signals(conn: Connection, config: DetectConfig, now: datetime, embedder: Embedder | None,
                   report: DetectReport) -> list[Signal]:
    start = now - config.window
    baseline_end = now - config.window
    baseline_start = baseline_end - timedelta(days=config.baseline_days)
    hours = config.window.total_seconds() / 3600
    signals: list[Signal] = []

    signals += detect_metrics(await db.metric_points(conn, start, now), round(hours * 60))

    recent = await db.recent_cases(conn, now - max(config.cluster_window, config.window), now)
    window = [c for c in recent if c.created_at > start]
    codes = {c.case_id: _codes(c) for c in window}

    baseline = _volume_baseline(await db.volume_baseline(conn, baseline_start, baseline_end), config.baseline_days)
    labelled = [(c.category, c.subcategory, c.case_id, codes[c.case_id]) for c in window if c.category]
    signals += detect_volume(labelled, baseline, window_start=start, window_end=now, thresholds=config.thresholds)

    seen = sorted({code for found in codes.values() for code in found})
    signals += detect_error_codes(
        [(c.case_id, codes[c.case_id]) for c in window],
        await db.error_code_counts(conn, seen, baseline_start, baseline_end) if seen else {},
        await db.known_error_codes(conn), window_hours=hours, baseline_days=config.baseline_days,
        thresholds=config.thresholds, season=baseline.season(start, now),
    )

    if embedder is None:
        report.notes.append("clusters: off, no embeddings (EMBEDDINGS=none)")
    else:
        signals += await _clusters(conn, config, now, embedder.model, recent, baseline_start, baseline_end,
                                   baseline.season(now - config.cluster_window, now))

    for fingerprint, case_id, subject, case_codes in await db.critical_cases(conn):
        signals.append(Signal(
            kind=Kind.CRITICAL_CASE, fingerprint=fingerprint, severity=Severity.CRITICAL,
            title=f"Critical case waiting for a person: {subject or 'no subject'}", figures={},
            case_ids=frozenset({case_id}), error_codes=frozenset(case_codes),
        ))
    return signals


def _codes(case: db.RecentCase) -> list[str]:
    """The codes a case carries: those triage stored and those its text quotes."""
    return sorted(set(case.error_codes) | set(codes_in(f"{case.subject or ''}\n{case.text}")))


def _title(case: db.RecentCase) -> str:
    return " ".join((case.text or case.subject or "").split())[:120]


class _Lazy(Sequence[_T]):
    """`make` of each case, worked out when first read: a cluster reads the codes and titles of the
    cases it reports only, and working them out for a whole day of cases (the code regex, mostly)
    took 5.5 of a 1M-case pass's 33 s."""

    def __init__(self, cases: Sequence[db.RecentCase], make: Callable[[db.RecentCase], _T]) -> None:
        self._cases = cases
        self._make = make
        self._made: dict[int, _T] = {}

    def __len__(self) -> int:
        return len(self._cases)

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index not in self._made:
            self._made[index] = self._make(self._cases[index])
        return self._made[index]


def _volume_baseline(rows: list[tuple[str | None, str | None, int, int, int]], days: int) -> VolumeBaseline:
    per_day: dict[tuple[str, str | None], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    profile = [0] * HOURS_OF_WEEK
    for category, subcategory, day, how, n in rows:
        profile[how] += n
        if category is not None:
            per_day[(category, subcategory)][day] += n
    return VolumeBaseline(days, {key: list(d.values()) for key, d in per_day.items()}, profile)


async def _clusters(conn: Connection, config: DetectConfig, now: datetime, model: str, recent: list[db.RecentCase],
                    baseline_start: datetime, baseline_end: datetime, season: float) -> list[Signal]:
    start = now - config.cluster_window
    vectors = await db.case_vectors(conn, start, now, model)
    cases = [c for c in recent if c.created_at > start and c.case_id in vectors]
    if len(cases) < config.thresholds.cluster_min_size:
        return []
    sample, fraction = await db.baseline_sample(conn, baseline_start, baseline_end, model, config.baseline_sample)
    baseline_hours = (baseline_end - baseline_start).total_seconds() / 3600
    window_hours = config.cluster_window.total_seconds() / 3600
    seed_after = now - config.seed_window
    return detect_clusters(
        WindowCases(
            ids=[c.case_id for c in cases],
            vectors=np.vstack([vectors[c.case_id] for c in cases]),
            seed=np.array([c.created_at > seed_after for c in cases]),
            titles=_Lazy(cases, _title),
            categories=[c.category for c in cases],
            codes=_Lazy(cases, _codes),
        ),
        BaselineSample(sample, window_hours / baseline_hours / fraction * season if fraction else 0.0),
        similarity=config.similarity or similarity_for(model), window_hours=window_hours,
        thresholds=config.thresholds,
    )


async def _apply(conn: Connection, incidents: list[Incident], config: DetectConfig, now: datetime,
                 report: DetectReport, *, post: bool, summarise: bool) -> None:
    open_alerts = await db.open_alerts(conn)
    fresh: list[UUID] = []
    for incident in incidents:
        matches = [a for a in open_alerts if _matches(a, incident)]
        if matches:
            alert = matches[0]
            for other in matches[1:]:  # still firing, through this incident: kept open, unchanged
                await db.update_alert(conn, other.alert_id, _fields_of(other), now, changed=False)
                report.outcomes.setdefault(other.alert_id, "unchanged")
            signals = dict(alert.signals) | {s.fingerprint: s.as_json() for s in incident.signals}
            fields = _fields(list(signals.values()), incident)
            added = await db.add_evidence(conn, alert.alert_id, _evidence(incident), now)
            joined = {s.fingerprint for s in incident.signals} - alert.signals.keys() - {alert.fingerprint}
            changed = added > 0 or bool(joined) or fields.kind != alert.kind or \
                Severity(fields.severity).rank > _rank(alert.severity)
            await db.update_alert(conn, alert.alert_id, fields, now, changed=changed)
            if changed:
                await db.count_evidence(conn, alert.alert_id)
            report.outcomes[alert.alert_id] = "updated" if changed else report.outcomes.get(alert.alert_id, "unchanged")
            continue
        fields = _fields([s.as_json() for s in incident.signals], incident)
        alert_id = await db.create_alert(conn, _fingerprint(incident), fields, now)
        if alert_id is None:  # an alert no correlation found, with this fingerprint: a race we lost
            continue
        await db.add_evidence(conn, alert_id, _evidence(incident), now)
        await db.count_evidence(conn, alert_id)
        report.outcomes[alert_id] = "new"
        fresh.append(alert_id)
    for alert_id in await db.resolve_quiet(conn, now - config.resolve_after, now, list(report.outcomes)):
        report.outcomes[alert_id] = "resolved"
    reminders = await db.due_reminders(conn, now - config.repeat_after, now)
    if summarise:
        for alert_id in fresh:
            await jobs.enqueue(conn, JobName.ALERT_SUMMARY, SummaryJob(alert_id=alert_id).payload(),
                               dedupe_key=f"{JobName.ALERT_SUMMARY}:{alert_id}")
    if post:
        for alert_id in await db.unposted_alerts(conn):
            await jobs.enqueue(conn, JobName.ALERT_POST, AlertJob(alert_id=alert_id).payload(),
                               dedupe_key=f"{JobName.ALERT_POST}:{alert_id}")
        for alert_id in reminders:
            await jobs.enqueue(conn, JobName.ALERT_POST, AlertJob(alert_id=alert_id, remind=True).payload(),
                               dedupe_key=f"{JobName.ALERT_POST}:remind:{alert_id}")


def _rank(severity: str) -> int:
    return Severity(severity).rank if severity in Severity.__members__.values() else -1


def _matches(alert: db.OpenAlert, incident: Incident) -> bool:
    fingerprints = {s.fingerprint for s in incident.signals}
    return alert.fingerprint in fingerprints or bool(fingerprints & alert.signals.keys()) \
        or bool(incident.case_ids & alert.case_ids)


def _fingerprint(incident: Incident) -> str:
    if len(incident.signals) == 1:
        return incident.signals[0].fingerprint
    return "incident:" + min(s.fingerprint for s in incident.signals)


def _fields(signals: list[dict[str, object]], incident: Incident) -> db.AlertFields:
    """What the alert shows, from all its signals (those stored and those firing now)."""
    severity = worst([Severity(str(s["severity"])) for s in signals])
    kind = str(signals[0]["kind"]) if len(signals) == 1 else Kind.INCIDENT.value
    if len({s["kind"] for s in signals}) > 1:
        # Two detectors that see the same cases independently: no longer a mere warning.
        severity = worst([severity, Severity.HIGH])
    first = {key: next((str(s[key]) for s in signals if s.get(key)), None)
             for key in ("category", "subcategory", "metric", "error_code")}
    title, description = describe(signals, len(incident.case_ids))
    return db.AlertFields(kind, severity.value, title, description, signals, first["category"],
                          first["subcategory"], first["metric"], first["error_code"])


def _fields_of(alert: db.OpenAlert) -> db.AlertFields:
    signals = list(alert.signals.values())
    title, description = describe(signals, len(alert.case_ids))
    return db.AlertFields(alert.kind, alert.severity, title, description, signals, None, None, None, None)


def _evidence(incident: Incident) -> list[tuple[str, UUID | None, dict[str, object]]]:
    items: list[tuple[str, UUID | None, dict[str, object]]] = []
    for signal in incident.signals:
        items.append((f"signal:{signal.fingerprint}", None, {"kind": signal.kind.value}))
        items += [(key, None, details) for key, details in signal.evidence]
    items += [(f"case:{case_id}", case_id, {"case_id": str(case_id)}) for case_id in sorted(incident.case_ids, key=str)]
    return items
