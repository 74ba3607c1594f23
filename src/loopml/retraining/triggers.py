"""What makes a loop retrain: drift, falling performance, enough new labels, or time.

Each trigger looks at the :class:`Evidence` one tick gathered and says whether it fires
and why, in a sentence that is stored with the decision. Triggers hold thresholds only;
the loop computes the evidence, so a trigger can be tested on evidence written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from loopml.core.errors import InvalidInputError
from loopml.registry.evaluation import higher_is_better
from loopml.retraining.durations import format_duration, parse_duration


@dataclass(frozen=True)
class Evidence:
    """What one tick knows. Times are the loop's clock (event time in a replay).

    ``performance`` is realised from labels joined to the window's answers;
    ``estimated_performance`` is a label-free estimate where monitoring provides one.
    ``labels_since_retrain`` counts labelled answers since the last retrain (or since the
    loop started, before the first)."""

    now: float
    since: float | None
    rows: int
    labelled_rows: int
    drift_score: float | None
    drifted_columns: tuple[str, ...] = ()
    performance: dict[str, float] = field(default_factory=dict)
    estimated_performance: dict[str, float] = field(default_factory=dict)
    labels_since_retrain: int = 0
    last_retrain: float | None = None
    started: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "since": self.since,
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "drift_score": self.drift_score,
            "drifted_columns": list(self.drifted_columns),
            "performance": self.performance,
            "estimated_performance": self.estimated_performance,
            "labels_since_retrain": self.labels_since_retrain,
            "last_retrain": self.last_retrain,
        }


@dataclass(frozen=True)
class Verdict:
    trigger: str
    fired: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "fired": self.fired, "reason": self.reason}


class Trigger(Protocol):
    def describe(self) -> str: ...

    def check(self, evidence: Evidence) -> Verdict: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DriftAbove:
    """Fires when the window's drift score (share of drifted input columns) exceeds
    ``threshold``, on at least ``min_rows`` answered rows."""

    threshold: float
    min_rows: int = 100

    def __post_init__(self) -> None:
        _unit_interval(self.threshold, "DriftAbove threshold")
        _count(self.min_rows, "DriftAbove min_rows")

    def describe(self) -> str:
        return f"drift score > {self.threshold:g}"

    def check(self, evidence: Evidence) -> Verdict:
        score = evidence.drift_score
        if score is None or evidence.rows < self.min_rows:
            return Verdict(
                self.describe(),
                False,
                f"{evidence.rows} answered rows in the window, drift needs {self.min_rows}",
            )
        drifted = ", ".join(evidence.drifted_columns[:6]) or "none"
        fired = score > self.threshold
        word = "above" if fired else "not above"
        return Verdict(
            self.describe(),
            fired,
            f"drift score {score:.2f} {word} {self.threshold:g} (drifted: {drifted})",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": "drift_above", "threshold": self.threshold, "min_rows": self.min_rows}


@dataclass(frozen=True)
class PerformanceBelow:
    """Fires when ``metric`` is worse than ``threshold``: realised from labels when the
    window has ``min_labels`` of them, else the estimate (if monitoring gives one)."""

    metric: str
    threshold: float
    min_labels: int = 100

    def __post_init__(self) -> None:
        higher_is_better(self.metric)  # refuses an unknown metric with the list of known ones
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise InvalidInputError("PerformanceBelow threshold must be a number")
        if not math.isfinite(self.threshold):
            raise InvalidInputError("PerformanceBelow threshold must be finite")
        _count(self.min_labels, "PerformanceBelow min_labels")

    def describe(self) -> str:
        op = "<" if higher_is_better(self.metric) else ">"
        return f"{self.metric} {op} {self.threshold:g}"

    def check(self, evidence: Evidence) -> Verdict:
        value = None
        source = ""
        if evidence.labelled_rows >= self.min_labels and self.metric in evidence.performance:
            value, source = evidence.performance[self.metric], "realised"
        elif self.metric in evidence.estimated_performance:
            value, source = evidence.estimated_performance[self.metric], "estimated"
        if value is None:
            return Verdict(
                self.describe(),
                False,
                f"no {self.metric} yet ({evidence.labelled_rows} labelled rows, "
                f"{self.min_labels} needed, no estimate)",
            )
        worse = value < self.threshold if higher_is_better(self.metric) else value > self.threshold
        word = "worse than" if worse else "not worse than"
        return Verdict(
            self.describe(), worse, f"{source} {self.metric} {value:.3f} {word} {self.threshold:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "performance_below",
            "metric": self.metric,
            "threshold": self.threshold,
            "min_labels": self.min_labels,
        }


@dataclass(frozen=True)
class NewLabels:
    """Fires when at least ``min_rows`` labelled answers arrived since the last retrain."""

    min_rows: int

    def __post_init__(self) -> None:
        _count(self.min_rows, "NewLabels min_rows", minimum=1)

    def describe(self) -> str:
        return f"{self.min_rows:,} new labels"

    def check(self, evidence: Evidence) -> Verdict:
        n = evidence.labels_since_retrain
        fired = n >= self.min_rows
        return Verdict(
            self.describe(),
            fired,
            f"{n:,} labelled rows since the last retrain "
            f"({'at least' if fired else 'fewer than'} {self.min_rows:,})",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": "new_labels", "min_rows": self.min_rows}


@dataclass(frozen=True)
class Every:
    """Fires when ``period`` (e.g. '7d') has passed since the last retrain (or since the
    loop started)."""

    period: str | float
    seconds: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seconds = parse_duration(self.period, "Every period")
        if seconds <= 0:
            raise InvalidInputError("Every period must be longer than 0 s")
        object.__setattr__(self, "seconds", seconds)

    def describe(self) -> str:
        return f"every {format_duration(self.seconds)}"

    def check(self, evidence: Evidence) -> Verdict:
        last = evidence.last_retrain if evidence.last_retrain is not None else evidence.started
        if last is None:
            return Verdict(self.describe(), True, "never retrained")
        elapsed = evidence.now - last
        fired = elapsed >= self.seconds
        since = "the last retrain" if evidence.last_retrain is not None else "the loop started"
        return Verdict(
            self.describe(),
            fired,
            f"{elapsed / 86400:.1f} days since {since} "
            f"({'at least' if fired else 'less than'} {format_duration(self.seconds)})",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": "every", "period": self.period}


def trigger_from_dict(d: dict[str, Any]) -> Trigger:
    kinds: dict[str, Any] = {
        "drift_above": DriftAbove,
        "performance_below": PerformanceBelow,
        "new_labels": NewLabels,
        "every": Every,
    }
    if not isinstance(d, dict) or d.get("type") not in kinds:
        raise InvalidInputError(f"unknown trigger {d!r}; types: {', '.join(kinds)}")
    args = {k: v for k, v in d.items() if k != "type"}
    try:
        trigger: Trigger = kinds[d["type"]](**args)
    except TypeError as exc:
        raise InvalidInputError(f"trigger {d['type']}: {exc}") from None
    return trigger


def _unit_interval(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInputError(f"{what} must be a number between 0 and 1, not {value!r}")


def _count(value: object, what: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{what} must be a whole number >= {minimum}, not {value!r}")


__all__ = [
    "DriftAbove",
    "Every",
    "Evidence",
    "NewLabels",
    "PerformanceBelow",
    "Trigger",
    "Verdict",
    "trigger_from_dict",
]
