"""Triggers on evidence written by hand, durations, and bad input to the loop."""

from __future__ import annotations

from datetime import datetime

import pytest

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.registry.gates import Gate, Threshold
from loopml.retraining import (
    DriftAbove,
    Every,
    Evidence,
    Loop,
    LoopStore,
    NewLabels,
    PerformanceBelow,
)
from loopml.retraining.durations import parse_duration
from loopml.retraining.triggers import trigger_from_dict
from loopml.store.workspace import Workspace
from tests.retraining import flows

DAY = 86400.0


def evidence(**changes: object) -> Evidence:
    base: dict[str, object] = {
        "now": 100 * DAY,
        "since": 99 * DAY,
        "rows": 5000,
        "labelled_rows": 4000,
        "drift_score": 0.25,
        "drifted_columns": ("temp", "dewp"),
        "performance": {"roc_auc": 0.66},
        "labels_since_retrain": 12_000,
        "last_retrain": 95 * DAY,
        "started": 90 * DAY,
    }
    return Evidence(**{**base, **changes})  # type: ignore[arg-type]


def test_each_trigger_fires_on_its_own_evidence_and_says_why() -> None:
    v = DriftAbove(0.2).check(evidence())
    assert v.fired and "drift score 0.25 above 0.2 (drifted: temp, dewp)" in v.reason
    assert not DriftAbove(0.3).check(evidence()).fired
    assert not DriftAbove(0.2).check(evidence(rows=10)).fired  # too little traffic to tell
    assert not DriftAbove(0.2).check(evidence(drift_score=None)).fired

    v = PerformanceBelow("roc_auc", 0.68).check(evidence())
    assert v.fired and v.reason == "realised roc_auc 0.660 worse than 0.68"
    # Too few labels: the estimate decides, and says so.
    v = PerformanceBelow("roc_auc", 0.68).check(
        evidence(labelled_rows=10, estimated_performance={"roc_auc": 0.7})
    )
    assert not v.fired and v.reason.startswith("estimated roc_auc 0.700")
    assert not PerformanceBelow("roc_auc", 0.68).check(evidence(labelled_rows=10)).fired
    assert PerformanceBelow("log_loss", 0.5).check(evidence(performance={"log_loss": 0.6})).fired

    assert NewLabels(min_rows=10_000).check(evidence()).fired
    assert not NewLabels(min_rows=20_000).check(evidence()).fired

    assert not Every("7d").check(evidence()).fired  # 5 days since the last retrain
    assert Every("7d").check(evidence(last_retrain=None)).fired  # 10 days since the start
    assert Every("7d").describe() == "every 1w"


def test_triggers_round_trip_through_their_stored_form() -> None:
    for t in (DriftAbove(0.2), PerformanceBelow("roc_auc", 0.68), NewLabels(5), Every("7d")):
        assert trigger_from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DriftAbove(1.5), "between 0 and 1"),
        (lambda: DriftAbove(True), "between 0 and 1"),
        (lambda: PerformanceBelow("auc-ish", 0.5), "unknown metric"),
        (lambda: PerformanceBelow("roc_auc", float("nan")), "finite"),
        (lambda: NewLabels(0), ">= 1"),
        (lambda: NewLabels(2.5), "whole number"),  # type: ignore[arg-type]
        (lambda: Every("soon"), "not a duration"),
        (lambda: Every("0d"), "whole number"),
        (lambda: Every("7²d"), "whole number"),
        (lambda: trigger_from_dict({"type": "vibes"}), "unknown trigger"),
        (lambda: trigger_from_dict({"type": "every", "when": "1d"}), "trigger every"),
    ],
)
def test_bad_triggers_are_refused_clearly(make: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()  # type: ignore[operator]


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1d") == DAY
    assert parse_duration("2w") == 14 * DAY
    assert parse_duration(3600) == 3600
    for bad in ("", "d", "1y", "-1d", "1.5h", " 1d", "1d\n", float("inf"), -1, True):
        with pytest.raises(InvalidInputError):
            parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"canary": 1.0}, "0 <= canary < 1"),
        ({"canary": "10%"}, "0 <= canary < 1"),
        ({"cooldown": "a while"}, "not a duration"),
        ({"gate_window": "-1d"}, "not a duration"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"min_live_labels": 0}, "min_live_labels"),
        ({"metric": "auc"}, "unknown metric"),
        ({"challenger": "champion"}, "must differ"),
        ({"name": "bad name!"}, "name"),
    ],
)
def test_bad_loop_options_are_refused_clearly(
    workspace: Workspace, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Loop(workspace, "delay", flows.retrain, **options)  # type: ignore[arg-type]


def test_bad_loop_arguments_are_refused_clearly(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match=r"@lm\.pipeline"):
        Loop(workspace, "delay", lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a trigger"):
        Loop(workspace, "delay", flows.retrain, triggers=["drift"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="gate"):
        Loop(workspace, "delay", flows.retrain, gate=Threshold("roc_auc", min=0.5))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Loop(workspace, "bad/name", flows.retrain)


def test_a_loop_needs_a_champion_and_aware_times(workspace: Workspace) -> None:
    gate = Gate((Threshold("roc_auc", min=0.5),), target="delayed")
    loop = Loop(workspace, "delay", flows.retrain, gate, [Every("1d")])
    with pytest.raises(NotFoundError, match="no registered model named 'delay'"):
        loop.tick()
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        loop.tick(datetime(2013, 3, 1))
    with pytest.raises(InvalidInputError, match="epoch seconds"):
        loop.tick(float("nan"))
    assert LoopStore(workspace).all() == []  # nothing was recorded for a refused tick


def test_a_pipeline_without_a_model_fails_its_retrain_and_the_cooldown_holds(
    ws: Workspace,
) -> None:
    loop = Loop(ws, "delay", flows.no_model, None, [Every("1h")], pipeline_params={"months": [1]})
    start = 200 * DAY
    assert loop.tick(start).action == "hold"  # the loop starts its clock
    first = loop.tick(start + 7200)
    assert [(d.kind, d.outcome) for d in first.decisions] == [
        ("trigger", "fired"),
        ("retrain", "failed"),
    ]
    assert "returned ['stats']" in first.decisions[-1].reasons[0]
    second = loop.tick(start + 4 * 3600)  # the trigger fires again, within the cooldown
    assert [(d.kind, d.outcome) for d in second.decisions] == [("trigger", "cooldown")]
