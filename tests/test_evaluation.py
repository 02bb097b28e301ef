from __future__ import annotations

import numpy as np
import pytest

from pipelines.triage.evaluation import coverage_at_precision, evaluate, macro_f1


def test_macro_f1_matches_a_hand_computation():
    expected = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    # a: tp1 fp1 fn1 -> 0.5; b: tp2 fp1 fn0 -> 0.8; c: tp0 -> 0
    assert macro_f1(expected, predicted) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_coverage_at_precision_takes_the_longest_good_prefix():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7])
    correct = np.array([True, True, False, True, True])
    coverage, threshold = coverage_at_precision(confidence, correct, 0.98)
    assert coverage == pytest.approx(2 / 5) and threshold == 0.95
    coverage, threshold = coverage_at_precision(confidence, correct, 0.75)
    assert coverage == pytest.approx(1.0) and threshold == 0.7
    assert coverage_at_precision(confidence, np.zeros(5, bool), 0.98) == (0.0, None)


def test_evaluate_reports_every_figure():
    report = evaluate(["x", "x", "y", "y"], ["x", "y", "y", "y"], [0.9, 0.5, 0.95, 0.7], high=0.85)
    assert report.n_test == 4 and report.accuracy == 0.75
    assert report.coverage_at_high == 0.5 and report.precision_at_high == 1.0
    assert report.most_confused[0].model_dump() == {"expected": "x", "predicted": "y", "count": 1}
    with pytest.raises(ValueError):
        evaluate([], [], [], high=0.85)
