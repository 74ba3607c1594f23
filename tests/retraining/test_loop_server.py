"""The loop against a real inference server: retrain on drift and new labels, a canary
rejected, a champion rolled back, cooldown; every decision stored with its reasons."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import polars as pl
import pytest

from loopml.registry.gates import Gate, SchemaCompatible, Threshold
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import set_policy
from loopml.retraining import DriftAbove, Loop, LoopStore, NewLabels
from loopml.store.workspace import Workspace
from tests.retraining import flows
from tests.retraining.conftest import MODEL, Client, serve

# A lax gate: a model trained on shuffled labels passes it (AUC about 0.5). Canary and the
# post-promotion watch exist for what a gate's offline window does not catch.
LAX_GATE = Gate((Threshold("roc_auc", min=0.3), SchemaCompatible()), target="delayed")


def _loop(ws: Workspace, *, canary: float, shuffle: bool) -> Loop:
    return Loop(
        ws,
        MODEL,
        flows.retrain,
        LAX_GATE,
        [DriftAbove(0.2), NewLabels(min_rows=500)],
        canary=canary,
        cooldown="1d",
        min_live_labels=100,
        pipeline_params={"months": [1, 7], "shuffle": shuffle},
    )


@pytest.mark.slow
def test_drift_and_new_labels_retrain_then_the_canary_is_rejected_and_cooldown_holds(
    ws: Workspace, july: pl.DataFrame
) -> None:
    registry = Registry(ws)
    with serve(ws, canary_percent=50) as server:
        client = Client(server, ws)
        client.replay(july.slice(0, 1000))
        loop = _loop(ws, canary=0.5, shuffle=True)

        first = loop.tick()
        kinds = [(d.kind, d.outcome) for d in first.decisions]
        assert kinds == [
            ("trigger", "fired"),
            ("retrain", "registered"),
            ("gate", "passed"),
            ("canary", "started"),
        ]
        trigger = first.decisions[0]
        assert any(r.startswith("drift score > 0.2: drift score") for r in trigger.reasons)
        assert any("1,000 labelled rows since the last retrain" in r for r in trigger.reasons)
        drifted = first.evidence.drifted_columns if first.evidence else ()
        assert "temp" in drifted  # July is warmer than January
        assert registry.aliases(MODEL) == {"champion": 1, "challenger": 2}
        # The candidate's registration links the data the pipeline trained it on.
        assert registry.get_version(MODEL, 2).dataset_artifact_ids
        client.wait_serving("canary", 2)

        answers = client.replay(july.slice(1000, 1500))
        by_version = {a["model_version"] for a in answers}
        assert by_version == {"1", "2"}  # half the requests went to the canary
        second = loop.tick()
        verdict = [d for d in second.decisions if d.kind == "canary"]
        assert [d.outcome for d in verdict] == ["rejected"]
        assert "live roc_auc of 2" in verdict[0].reasons[0]
        live, reference = verdict[0].details["live"], verdict[0].details["reference"]
        assert live < reference  # shuffled labels: worse than the champion on the same rows
        assert registry.aliases(MODEL) == {"champion": 1, "challenger": 1}
        client.wait_serving("canary", 1)

        # Labels keep arriving, the trigger fires again, but the loop retrained < 1 day ago.
        client.replay(july.slice(2500, 600))
        third = loop.tick()
        assert [(d.kind, d.outcome) for d in third.decisions] == [("trigger", "cooldown")]
        assert "in cooldown" in third.decisions[0].reasons[-1]
        assert len(registry.versions(MODEL)) == 2  # nothing retrained

    stored = LoopStore(ws).decisions(MODEL)
    assert [d.id for d in stored] == sorted(d.id for d in stored)
    assert [d.kind for d in stored] == [
        "trigger",
        "retrain",
        "gate",
        "canary",
        "canary",
        "trigger",
    ]
    for d in stored:
        assert d.reasons and all(r.strip() for r in d.reasons)
        execution = ws.lineage.get_execution(d.execution_id or "")
        assert execution.kind == f"loop_{d.kind}"
        assert execution.properties["reasons"] == list(d.reasons)
    state = loop.status()
    assert state["phase"] == "steady" and state["tick"] == 3


@pytest.mark.slow
def test_a_champion_that_does_worse_live_is_rolled_back(ws: Workspace, july: pl.DataFrame) -> None:
    registry = Registry(ws)
    with serve(ws) as server:
        client = Client(server, ws)
        client.replay(july.slice(0, 600))
        loop = _loop(ws, canary=0.0, shuffle=True)
        first = loop.tick()
        assert [(d.kind, d.outcome) for d in first.decisions][-1] == ("promotion", "promoted")
        assert registry.alias_version(MODEL, "champion") == 2
        client.wait_serving("primary", 2)

        client.replay(july.slice(600, 600))
        second = loop.tick()
        rollback = second.decisions[-1]
        assert (rollback.kind, rollback.outcome) == ("rollback", "rolled back")
        assert (rollback.from_version, rollback.to_version) == (2, 1)
        assert rollback.details["live"] < rollback.details["reference"]
        assert "which it replaced" in rollback.reasons[0]
        assert registry.alias_version(MODEL, "champion") == 1
        history = registry.history(MODEL, "champion")
        assert [e.action for e in history][-1] == "rollback"
        client.wait_serving("primary", 1)
        answers = client.replay(july.slice(1200, 100))
        assert {a["model_version"] for a in answers} == {"1"}
    assert loop.status()["phase"] == "steady"


def test_decisions_wait_for_enough_live_labels(ws: Workspace, july: pl.DataFrame) -> None:
    """No server: nothing was served, so no trigger has evidence and the loop holds."""
    loop = _loop(ws, canary=0.0, shuffle=False)
    result = loop.tick(time.time())
    assert result.action == "hold"
    (decision,) = result.decisions
    assert decision.reasons[0] == "no trigger fired"
    assert any("0 labelled rows since the last retrain" in r for r in decision.reasons)
    assert registry_versions(ws) == 1


def registry_versions(ws: Workspace) -> int:
    return len(Registry(ws).versions(MODEL))


def test_the_loop_decides_by_event_time_not_wall_time(ws: Workspace, july: pl.DataFrame) -> None:
    """Traffic replayed now but stamped July 2013 is July 2013 traffic to the loop."""
    stamp = datetime(2013, 7, 15, 12, tzinfo=UTC).timestamp()
    with serve(ws) as server:
        Client(server, ws).replay(july.slice(0, 300), event_time=stamp)
    now = {"t": datetime(2013, 7, 10, tzinfo=UTC).timestamp()}
    loop = Loop(
        ws,
        MODEL,
        flows.retrain,
        LAX_GATE,
        [NewLabels(min_rows=200)],
        clock=lambda: now["t"],
        pipeline_params={"months": [1, 7]},
    )
    before = loop.tick()  # July 10th: that traffic has not happened yet
    assert before.action == "hold" and before.evidence is not None
    assert before.evidence.rows == 0 and before.evidence.labels_since_retrain == 0
    assert before.decisions[0].at == now["t"]
    after = loop.evidence(datetime(2013, 8, 1, tzinfo=UTC).timestamp())
    assert after.rows == 300 and after.labels_since_retrain == 300
    assert after.drift_score is not None and "temp" in after.drifted_columns
    assert loop.status()["last_tick"] == now["t"]  # the injected clock, not the wall


@pytest.mark.slow
def test_a_loop_without_a_gate_gates_with_the_models_promotion_policy(
    ws: Workspace, july: pl.DataFrame
) -> None:
    set_policy(ws, MODEL, LAX_GATE)
    with serve(ws, canary_percent=50) as server:
        Client(server, ws).replay(july.slice(0, 600))
    loop = Loop(
        ws,
        MODEL,
        flows.retrain,
        None,
        [NewLabels(min_rows=500)],
        canary=0.5,
        pipeline_params={"months": [1, 7]},
    )
    result = loop.tick()
    gate = [d for d in result.decisions if d.kind == "gate"]
    assert [d.outcome for d in gate] == ["passed"]
    assert gate[0].details["gate"]["gate"] == LAX_GATE.name
    registry = Registry(ws)
    assert registry.aliases(MODEL) == {"champion": 1, "challenger": 2}
    moved = registry.history(MODEL, "challenger")[-1]
    assert moved.allowed and not moved.forced  # gated by the policy, not forced past it
