"""Signals that share a case or an error code are one incident: a cluster of login failures, the
spike of its category and the error code its customers quote make one alert, not three."""

from __future__ import annotations

from typing import Any

from pipelines.detection.signals import Incident, Signal


def correlate(signals: list[Signal]) -> list[Incident]:
    parent = list(range(len(signals)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # A code links the signal about that code with the signals whose cases quote it; a code that
    # did not fire links nothing.
    fired = {s.error_code for s in signals if s.error_code}
    owner: dict[object, int] = {}
    for i, signal in enumerate(signals):
        for key in [*signal.case_ids, *(("code", c) for c in signal.error_codes & fired)]:
            if key in owner:
                parent[root(i)] = root(owner[key])
            else:
                owner[key] = i
    groups: dict[int, Incident] = {}
    for i, signal in enumerate(signals):
        groups.setdefault(root(i), Incident()).signals.append(signal)
    return list(groups.values())


_LEAD = {"critical_case": 0, "cluster": 1, "error_code": 2, "metric": 3, "volume": 4}
_SEVERITY = {"critical": 0, "high": 1, "warning": 2}


def describe(signals: list[dict[str, Any]], cases: int) -> tuple[str, str]:
    """The alert's title and its template summary, from its signals (as stored)."""
    ordered = sorted(signals, key=lambda s: (_SEVERITY.get(str(s.get("severity")), 3), _LEAD.get(str(s.get("kind")), 9)))
    lead = str(ordered[0].get("title", "alert"))
    title = lead if len(ordered) == 1 else f"Incident: {lead} (+{len(ordered) - 1} correlated signal" \
        f"{'s' if len(ordered) > 2 else ''})"
    lines = [f"{str(s.get('kind', 'signal')).replace('_', ' ')}: {s.get('title', '')}" for s in ordered]
    if cases:
        lines.append(f"{cases} case{'s' if cases != 1 else ''} involved.")
    return title[:300], "\n".join(lines)[:2000]
