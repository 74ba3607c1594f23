"""The loop's stored state and decisions, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from loopml.core.errors import ConflictError, NotFoundError
from loopml.retraining.records import LoopStore
from loopml.store.workspace import Workspace


def test_decisions_are_stored_in_order_with_their_reasons(any_workspace: Workspace) -> None:
    store = LoopStore(any_workspace)
    store.ensure("nightly", "delay", {"canary": 0.1}, {"phase": "steady", "tick": 0})
    first = store.record(
        "nightly", "delay", tick=1, kind="trigger", outcome="fired", reasons=["drift 0.4"], at=1.0
    )
    second = store.record(
        "nightly",
        "delay",
        tick=1,
        kind="gate",
        outcome="passed",
        reasons=["all 3 checks passed", "roc_auc 0.71 >= 0.6"],
        at=1.0,
        from_version=1,
        to_version=2,
        details={"gate": {"passed": True}},
    )
    stored = store.decisions("nightly")
    assert [d.id for d in stored] == [first.id, second.id]
    assert stored[1].reasons == ("all 3 checks passed", "roc_auc 0.71 >= 0.6")
    assert (stored[1].from_version, stored[1].to_version) == (1, 2)
    assert stored[1].details == {"gate": {"passed": True}}
    assert [d.id for d in store.decisions("nightly", limit=1)] == [second.id]
    execution = any_workspace.lineage.get_execution(second.execution_id or "")
    assert execution.kind == "loop_gate" and execution.properties["outcome"] == "passed"
    assert second.summary() == "gate passed 1 -> 2: all 3 checks passed; roc_auc 0.71 >= 0.6"


def test_state_saves_are_conditional(any_workspace: Workspace) -> None:
    store = LoopStore(any_workspace)
    store.ensure("nightly", "delay", {}, {"phase": "steady", "tick": 0})
    record = store.get("nightly")
    assert store.save_state("nightly", {"phase": "canary", "tick": 1}, record.revision) == 1
    # A second ticker that read the same revision must not overwrite the first one's state.
    with pytest.raises(ConflictError, match="changed by another process"):
        store.save_state("nightly", {"phase": "steady", "tick": 1}, record.revision)
    assert store.get("nightly").state == {"phase": "canary", "tick": 1}
    # Re-declaring the loop refreshes its spec, keeps its state; another model is refused.
    store.ensure("nightly", "delay", {"canary": 0.2}, {"phase": "steady", "tick": 0})
    assert store.get("nightly").spec == {"canary": 0.2}
    assert store.get("nightly").state["phase"] == "canary"
    with pytest.raises(ConflictError, match="already looks after model 'delay'"):
        store.ensure("nightly", "other", {}, {})
    with pytest.raises(NotFoundError, match="no loop named 'weekly'"):
        store.get("weekly")
    assert [r.name for r in store.all()] == ["nightly"]
