"""What a detector reports: a signal, with its fingerprint, figures and evidence. Signals that share
cases or an error code become one incident (pipelines/detection/incidents.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID


class Kind(StrEnum):
    METRIC = "metric"
    VOLUME = "volume"
    CLUSTER = "cluster"
    ERROR_CODE = "error_code"
    CRITICAL_CASE = "critical_case"
    INCIDENT = "incident"  # several correlated signals


class Severity(StrEnum):
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.WARNING: 0, Severity.HIGH: 1, Severity.CRITICAL: 2}


def worst(severities: list[Severity]) -> Severity:
    return max(severities, key=lambda s: s.rank)


@dataclass(frozen=True)
class Signal:
    kind: Kind
    fingerprint: str
    severity: Severity
    title: str
    figures: dict[str, Any]  # observed, expected, z, threshold, value, unit, window_minutes…
    case_ids: frozenset[UUID] = frozenset()
    # Evidence that is not a case, as (key, details): a metric point, say.
    evidence: tuple[tuple[str, dict[str, Any]], ...] = ()
    error_codes: frozenset[str] = frozenset()  # codes its cases carry: correlates with error-code signals
    category: str | None = None
    subcategory: str | None = None
    metric: str | None = None
    error_code: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The signal as stored in the alert's evidence and shown on its Slack message."""
        shown = {"kind": self.kind.value, "fingerprint": self.fingerprint, "title": self.title,
                 "severity": self.severity.value, "category": self.category, "subcategory": self.subcategory,
                 "metric": self.metric, "error_code": self.error_code, "cases": len(self.case_ids)}
        return {k: v for k, v in (shown | self.figures).items() if v is not None}


@dataclass(frozen=True)
class Rate:
    """An observed count against what the baseline expects for the same stretch of time."""

    observed: int
    expected: float
    dispersion: float = 1.0  # variance / mean of the baseline's daily counts (1 for Poisson)

    @property
    def z(self) -> float:
        """(observed − expected) / √(dispersion · expected + 1). The +1 keeps a rare or new key from
        firing on a case or two: with nothing expected, z is the observed count itself."""
        return (self.observed - self.expected) / math.sqrt(self.dispersion * self.expected + 1.0)

    def figures(self) -> dict[str, Any]:
        return {"observed": self.observed, "expected": round(self.expected, 2), "z": round(self.z, 2)}


@dataclass(frozen=True)
class Thresholds:
    """How unusual a count must be to fire (settings VOLUME_Z, VOLUME_MIN_COUNT, …)."""

    z: float = 4.0
    min_count: int = 5
    ratio: float = 2.0  # observed must also be at least this multiple of expected
    error_code_min_count: int = 3
    cluster_min_size: int = 4

    def unusual(self, rate: Rate, min_count: int | None = None, ratio: float | None = None) -> bool:
        floor = self.min_count if min_count is None else min_count
        return rate.observed >= floor and rate.z >= self.z and rate.observed >= (ratio or self.ratio) * rate.expected


@dataclass
class Incident:
    """Signals correlated into one alert."""

    signals: list[Signal] = field(default_factory=list)

    @property
    def case_ids(self) -> frozenset[UUID]:
        return frozenset().union(*(s.case_ids for s in self.signals))

    @property
    def severity(self) -> Severity:
        return worst([s.severity for s in self.signals])

    @property
    def kind(self) -> Kind:
        kinds = {s.kind for s in self.signals}
        return kinds.pop() if len(kinds) == 1 and len(self.signals) == 1 else Kind.INCIDENT
