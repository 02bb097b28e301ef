"""Volume spikes per (category, subcategory): the window's count against what a 30-day baseline
expects for the same hour of the week.

Expected = the key's mean daily count × the share of a day's cases that arrive in this hour of this
weekday (from every case of the baseline, so a quiet key borrows the shape of the whole desk) × the
window's length in hours. Seasonality is the global hour-of-week profile; each key keeps its own
level. z = (observed − expected) / √(D · expected + 1), with D the key's index of dispersion (variance
over mean of its daily counts, at least 1). A key fires when z ≥ VOLUME_Z, observed ≥ VOLUME_MIN_COUNT
and observed ≥ 2 × expected; a key with no history at all can fire on an absolute burst, as its z
is its count."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from pipelines.detection.signals import Kind, Rate, Severity, Signal, Thresholds

HOURS_OF_WEEK = 168
# Weight of a flat profile mixed into the measured one, so a thin baseline cannot claim that an
# hour never sees a case.
_FLAT_WEIGHT = 0.1
_MAX_DISPERSION = 10.0
EVIDENCE_CASES_MAX = 200

Key = tuple[str, str | None]


def hour_of_week(instant: datetime) -> int:
    return instant.weekday() * 24 + instant.hour


@dataclass(frozen=True)
class VolumeBaseline:
    days: int
    daily: dict[Key, list[int]]  # per key, its count on each baseline day (days without a case absent)
    hour_profile: Sequence[int]  # every baseline case by hour of the week (Monday 00h = 0)

    def share(self, how: int) -> float:
        """The fraction of an average day's cases that arrive in this hour of the week."""
        total = sum(self.hour_profile)
        if total == 0:
            return 1 / 24
        flat = total / HOURS_OF_WEEK
        return 7 * (self.hour_profile[how] + _FLAT_WEIGHT * flat) / (total * (1 + _FLAT_WEIGHT))

    def season(self, start: datetime, end: datetime) -> float:
        """How busy [start, end) is against an average stretch as long: 1 for a flat desk, above 1
        for a weekday's working hours, below at night and at weekends."""
        hours = max(1, round((end - start).total_seconds() / 3600))
        return sum(24 * self.share(hour_of_week(start + timedelta(hours=h))) for h in range(hours)) / hours

    def rate(self, key: Key, observed: int, how: int, window_hours: float) -> Rate:
        counts = self.daily.get(key, [])
        days = [*counts, *([0] * max(0, self.days - len(counts)))]
        mean = statistics.fmean(days) if days else 0.0
        dispersion = 1.0
        if mean > 0 and len(days) > 1:
            dispersion = min(_MAX_DISPERSION, max(1.0, statistics.variance(days) / mean))
        return Rate(observed, mean * self.share(how) * window_hours, dispersion)


def volume_fingerprint(key: Key) -> str:
    return f"volume:{key[0]}/{key[1] or '-'}"


def detect_volume(
    window: Sequence[tuple[str, str | None, UUID, Sequence[str]]],
    baseline: VolumeBaseline,
    *,
    window_start: datetime,
    window_end: datetime,
    thresholds: Thresholds,
) -> list[Signal]:
    """`window`: the window's triaged cases as (category, subcategory, case id, error codes)."""
    cases: dict[Key, list[UUID]] = defaultdict(list)
    codes: dict[Key, set[str]] = defaultdict(set)
    for category, subcategory, case_id, case_codes in window:
        cases[(category, subcategory)].append(case_id)
        codes[(category, subcategory)].update(case_codes)
    hours = (window_end - window_start).total_seconds() / 3600
    how = hour_of_week(window_start + (window_end - window_start) / 2)
    signals = []
    for key in sorted(cases, key=lambda k: (k[0], k[1] or "")):
        rate = baseline.rate(key, len(cases[key]), how, hours)
        if not thresholds.unusual(rate):
            continue
        severity = Severity.HIGH if rate.z >= 2 * thresholds.z and rate.observed >= 3 * rate.expected else Severity.WARNING
        label = "/".join(k for k in key if k)
        signals.append(Signal(
            kind=Kind.VOLUME, fingerprint=volume_fingerprint(key), severity=severity,
            title=f"{label}: {rate.observed} cases in {_span(hours)}, {rate.expected:.1f} expected",
            figures=rate.figures() | {"window_minutes": round(hours * 60)},
            case_ids=frozenset(cases[key][-EVIDENCE_CASES_MAX:]),
            error_codes=frozenset(codes[key]), category=key[0], subcategory=key[1],
        ))
    return signals


def _span(hours: float) -> str:
    return f"{hours:g} h" if hours >= 1 else f"{round(hours * 60)} min"
