"""Realised performance from joined labels, and CBPE's estimate before labels arrive.

Realised metrics are scikit-learn's, on the rows that have a label. The estimate follows
confidence-based performance estimation (Sagemüller, NannyML): calibrate the model's
probabilities on labelled reference data (isotonic regression, monotone so the ranking is
kept), then read each metric off the *expected* confusion matrix: a row predicted positive
with calibrated probability p is a true positive with probability p and a false positive
with probability 1 - p. ROC AUC is the area under the curve traced by the expected true-
and false-positive rates at every threshold. Binary classifiers with probabilities only;
anything else gets None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_CALIBRATION_ROWS = 100


def realised(
    task: str,
    classes: list[str] | None,
    labels: np.ndarray,
    values: np.ndarray,
    predictions: np.ndarray,
    proba: np.ndarray | None,
) -> dict[str, float] | None:
    """Metrics on labelled rows. ``labels`` and ``classes`` are label keys (text)."""
    from sklearn import metrics as m

    if len(labels) == 0:
        return None
    if task == "regression":
        y = values.astype(np.float64)
        ok = np.isfinite(y)
        if not ok.any():
            return None
        y, p = y[ok], predictions.astype(np.float64)[ok]
        return {
            "mae": float(m.mean_absolute_error(y, p)),
            "rmse": float(np.sqrt(m.mean_squared_error(y, p))),
            "r2": float(m.r2_score(y, p)) if len(y) > 1 else float("nan"),
        }
    if task != "classification" or classes is None:
        return None
    pred_keys = predictions.astype(str)
    out: dict[str, float] = {"accuracy": float(m.accuracy_score(labels, pred_keys))}
    known = np.isin(labels, classes)
    if proba is not None and known.all():
        index = {c: i for i, c in enumerate(classes)}
        y_idx = np.array([index[v] for v in labels])
        out["log_loss"] = float(m.log_loss(y_idx, proba, labels=list(range(len(classes)))))
        present = np.unique(y_idx)
        if len(classes) == 2 and len(present) == 2:
            out["roc_auc"] = float(m.roc_auc_score(y_idx, proba[:, 1]))
        elif len(classes) > 2 and len(present) == len(classes):
            out["roc_auc"] = float(m.roc_auc_score(y_idx, proba, multi_class="ovr"))
    if len(classes) == 2:
        pos = classes[1]
        out["precision"] = float(
            m.precision_score(labels, pred_keys, pos_label=pos, zero_division=0)
        )
        out["recall"] = float(m.recall_score(labels, pred_keys, pos_label=pos, zero_division=0))
        out["f1"] = float(m.f1_score(labels, pred_keys, pos_label=pos, zero_division=0))
    return out


@dataclass(frozen=True)
class Calibrator:
    """Isotonic map from a binary classifier's score to a calibrated probability."""

    model: Any

    @classmethod
    def fit(cls, scores: np.ndarray, positive: np.ndarray) -> Calibrator | None:
        """None when the reference cannot calibrate: too few rows or a single class."""
        from sklearn.isotonic import IsotonicRegression

        if len(scores) < MIN_CALIBRATION_ROWS or len(np.unique(positive)) < 2:
            return None
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        return cls(iso.fit(scores, positive.astype(np.float64)))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        # What IsotonicRegression.predict computes (linear between the fitted thresholds,
        # clipped outside), without its per-call input validation.
        return np.interp(scores, self.model.X_thresholds_, self.model.y_thresholds_)


def estimate(calibrated: np.ndarray, predicted_positive: np.ndarray) -> dict[str, float] | None:
    """CBPE's estimates from calibrated positive-class probabilities and the predictions."""
    p = np.asarray(calibrated, dtype=np.float64)
    if len(p) == 0:
        return None
    hard = np.asarray(predicted_positive, dtype=bool)
    tp = float(p[hard].sum())
    fp = float((1 - p[hard]).sum())
    fn = float(p[~hard].sum())
    tn = float((1 - p[~hard]).sum())
    out = {"accuracy": (tp + tn) / len(p)}
    out["precision"] = tp / (tp + fp) if tp + fp > 0 else 0.0
    out["recall"] = tp / (tp + fn) if tp + fn > 0 else 0.0
    pr = out["precision"] + out["recall"]
    out["f1"] = 2 * out["precision"] * out["recall"] / pr if pr > 0 else 0.0
    auc = expected_roc_auc(p)
    if auc is not None:
        out["roc_auc"] = auc
    return out


def expected_roc_auc(p: np.ndarray) -> float | None:
    """Area under the expected ROC curve of calibrated probabilities ``p``.

    At threshold t every row with p >= t is called positive; its expected contribution is
    p to the true positives and 1 - p to the false positives. Sorting once gives every
    threshold's expected counts as cumulative sums."""
    total_pos = float(p.sum())
    total_neg = float(len(p) - total_pos)
    if total_pos <= 0 or total_neg <= 0:
        return None
    order = np.sort(p)[::-1]
    tp = np.cumsum(order)
    fp = np.cumsum(1 - order)
    # One point per distinct threshold: the last index of each run of equal values.
    last = np.r_[order[1:] != order[:-1], True]
    tpr = np.r_[0.0, tp[last] / total_pos]
    fpr = np.r_[0.0, fp[last] / total_neg]
    return float(np.trapezoid(tpr, fpr))
