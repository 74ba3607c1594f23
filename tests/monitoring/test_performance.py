"""CBPE's pieces against independent computations (no timing, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from loopml.monitor import performance as perf


def test_expected_auc_is_the_auc_of_rows_weighted_by_their_probabilities() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.beta(2, 5, 3000), 3)  # rounding makes ties, which must be handled too
    # Each row is a positive with weight p and a negative with weight 1 - p.
    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    weighted = roc_auc_score(y, np.r_[p, p], sample_weight=np.r_[p, 1 - p])
    assert perf.expected_roc_auc(p) == pytest.approx(weighted, abs=1e-12)


def test_estimates_match_realised_metrics_when_probabilities_are_calibrated() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(2, 3, 200_000)
    y = rng.random(len(p)) < p
    est = perf.estimate(p, p >= 0.5)
    assert est is not None
    assert est["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.005)
    assert est["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y), abs=0.005)


def test_calibration_recovers_true_probabilities_from_a_distorted_score() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(50_000)
    y = rng.random(len(truth)) < truth
    score = truth**3  # monotone, badly calibrated
    cal = perf.Calibrator.fit(score, y)
    assert cal is not None
    assert np.abs(cal(score) - truth).mean() < 0.03
    assert perf.Calibrator.fit(score[:50], y[:50]) is None  # too few rows
    assert perf.Calibrator.fit(score, np.zeros(len(score), bool)) is None  # one class
    assert perf.estimate(np.array([]), np.array([], bool)) is None
    assert perf.expected_roc_auc(np.ones(10)) is None
