"""Error codes (ERR_AUTH_1042 and the like) in the window's cases, counted per code against the
code's rate over the baseline. A code listed in the error_codes table carries its own severity."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from uuid import UUID

from pipelines.detection.signals import Kind, Rate, Severity, Signal, Thresholds
from pipelines.detection.volume import EVIDENCE_CASES_MAX


def error_code_fingerprint(code: str) -> str:
    return f"error_code:{code}"


def detect_error_codes(
    window: Sequence[tuple[UUID, Sequence[str]]],
    baseline_counts: Mapping[str, int],
    known_severity: Mapping[str, str | None],
    *,
    window_hours: float,
    baseline_days: int,
    thresholds: Thresholds,
    season: float = 1.0,
) -> list[Signal]:
    """`window`: (case id, its codes) for the window's cases; `baseline_counts`: cases per code over
    the baseline; `known_severity`: the error_codes table's severity per code; `season`: how busy the
    window is against an average stretch as long (volume.py)."""
    cases: dict[str, list[UUID]] = defaultdict(list)
    for case_id, codes in window:
        for code in set(codes):
            cases[code].append(case_id)
    signals = []
    for code in sorted(cases):
        expected = baseline_counts.get(code, 0) / (baseline_days * 24) * window_hours * season
        rate = Rate(len(cases[code]), expected)
        if not thresholds.unusual(rate, thresholds.error_code_min_count):
            continue
        listed = known_severity.get(code)
        severity = {"critical": Severity.CRITICAL, "high": Severity.HIGH}.get(listed or "", Severity.HIGH
                    if rate.observed >= 3 * thresholds.error_code_min_count else Severity.WARNING)
        signals.append(Signal(
            kind=Kind.ERROR_CODE, fingerprint=error_code_fingerprint(code), severity=severity,
            title=f"{code} in {rate.observed} new cases ({rate.expected:.1f} expected)",
            figures=rate.figures() | {"window_minutes": round(window_hours * 60), "known": code in known_severity},
            case_ids=frozenset(cases[code][-EVIDENCE_CASES_MAX:]), error_codes=frozenset({code}), error_code=code,
        ))
    return signals
