"""Triage quality on a labelled test set: the figures `cx eval triage` reports. Pure numpy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class ConfusedPair(BaseModel):
    expected: str
    predicted: str
    count: int


class TriageEvaluation(BaseModel):
    n_test: int
    accuracy: float
    macro_f1: float
    coverage_at_p98: float
    threshold_at_p98: float | None
    coverage_at_high: float
    precision_at_high: float | None
    high_threshold: float
    most_confused: list[ConfusedPair]


def macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float:
    labels = sorted(set(expected) | set(predicted))
    scores = []
    for label in labels:
        tp = sum(e == label and p == label for e, p in zip(expected, predicted))
        fp = sum(e != label and p == label for e, p in zip(expected, predicted))
        fn = sum(e == label and p != label for e, p in zip(expected, predicted))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    # Labels only ever predicted (never expected) still count against precision, as in sklearn.
    return float(np.mean(scores)) if scores else 0.0


def coverage_at_precision(confidence: np.ndarray, correct: np.ndarray, target: float) -> tuple[float, float | None]:
    """The largest share of cases, most confident first, whose precision is at least `target`,
    and the confidence threshold that selects them (None if no prefix reaches it)."""
    order = np.argsort(-confidence, kind="stable")
    hits = correct[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ok = np.nonzero(precision >= target)[0]
    if len(ok) == 0:
        return 0.0, None
    last = int(ok[-1])
    return (last + 1) / len(hits), float(confidence[order][last])


def evaluate(
    expected: Sequence[str], predicted: Sequence[str], confidence: Sequence[float], *, high: float
) -> TriageEvaluation:
    if not expected:
        raise ValueError("the test set is empty")
    conf = np.asarray(confidence, dtype=float)
    correct = np.asarray([e == p for e, p in zip(expected, predicted)])
    coverage, threshold = coverage_at_precision(conf, correct, 0.98)
    above = conf >= high
    confused = Counter((e, p) for e, p in zip(expected, predicted) if e != p).most_common(10)
    return TriageEvaluation(
        n_test=len(expected),
        accuracy=float(correct.mean()),
        macro_f1=macro_f1(expected, predicted),
        coverage_at_p98=coverage,
        threshold_at_p98=threshold,
        coverage_at_high=float(above.mean()),
        precision_at_high=float(correct[above].mean()) if above.any() else None,
        high_threshold=high,
        most_confused=[ConfusedPair(expected=e, predicted=p, count=n) for (e, p), n in confused],
    )
