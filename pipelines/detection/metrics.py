"""Health metrics: a point at or above its critical threshold is critical, at or above its warning
threshold a warning. One signal per metric (and service), with the points that crossed as evidence."""

from __future__ import annotations

from db.detection import MetricRow as MetricPoint
from pipelines.detection.signals import Kind, Severity, Signal


def level(point: MetricPoint) -> Severity | None:
    if point.critical is not None and point.value >= point.critical:
        return Severity.CRITICAL
    if point.warning is not None and point.value >= point.warning:
        return Severity.WARNING
    return None


def metric_fingerprint(name: str, service: str | None) -> str:
    return f"metric:{name}@{service}" if service else f"metric:{name}"


def detect_metrics(points: list[MetricPoint], window_minutes: int) -> list[Signal]:
    """Points of the window, any order."""
    by_metric: dict[tuple[str, str | None], list[MetricPoint]] = {}
    for point in points:
        if level(point) is not None:
            by_metric.setdefault((point.name, point.service), []).append(point)
    signals = []
    for (name, service), crossed in sorted(by_metric.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        # The worst point speaks for the metric; the latest is what it reads now.
        worst = max(crossed, key=lambda p: (level(p) == Severity.CRITICAL, p.value))
        latest = max(crossed, key=lambda p: p.recorded_at)
        severity = level(worst) or Severity.WARNING
        threshold = worst.critical if severity is Severity.CRITICAL else worst.warning
        where = f" ({service})" if service else ""
        unit = f" {worst.unit}" if worst.unit else ""
        signals.append(Signal(
            kind=Kind.METRIC, fingerprint=metric_fingerprint(name, service), severity=severity,
            title=f"{name}{where} at {worst.value:g}{unit}, {severity.value} threshold {threshold:g}{unit}",
            figures={"value": worst.value, "latest": latest.value, "threshold": threshold, "unit": worst.unit,
                     "service": service, "points": len(crossed), "window_minutes": window_minutes},
            evidence=tuple((f"metric:{p.metric_id}", {"metric_id": str(p.metric_id), "value": p.value,
                                                       "recorded_at": p.recorded_at.isoformat()}) for p in crossed),
            metric=name,
        ))
    return signals
