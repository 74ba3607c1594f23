"""Promotion through gates: pass, refuse (recorded, alias unmoved), rollback, YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.demo.flights import TARGET
from loopml.registry.gates import (
    Gate,
    GateResult,
    NoWorseThanChampion,
    SchemaCompatible,
    SliceThreshold,
    SmokeTest,
    Threshold,
)
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import policy, promote, set_policy
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights

GATE_YAML = """
name: delay-gate
target: delayed
checks:
  - {type: threshold, metric: roc_auc, min: 0.6}
  - {type: no_worse_than_champion, metric: roc_auc, max_drop: 0.01}
  - {type: slice_threshold, column: origin, metric: roc_auc, min: 0.55, min_rows: 100}
  - {type: schema_compatible}
  - {type: smoke_test, max_latency_ms: 60000, rows: 50}
"""


@pytest.fixture
def gate() -> Gate:
    return Gate.from_yaml(GATE_YAML)


def test_yaml_round_trip(gate: Gate, tmp_path: Path) -> None:
    assert gate.name == "delay-gate" and len(gate.checks) == 5 and gate.slice_by == ["origin"]
    assert Gate.from_yaml(gate.to_yaml()) == gate
    path = tmp_path / "gate.yaml"
    path.write_text(GATE_YAML)
    assert Gate.from_yaml(path) == gate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("checks: [{type: thresold, metric: auc}]", "unknown gate check type 'thresold'"),
        ("checks: [{type: threshold, metric: aucc, min: 1}]", "unknown metric 'aucc'"),
        ("checks: [{type: threshold, metric: roc_auc}]", "needs min or max"),
        ("checks: [{type: threshold, metric: roc_auc, min: 1, typo: 2}]", "typo"),
        ("checks: [{type: threshold, metric: roc_auc, min: 1}]", "target"),
        ("checks: []", "at least one check"),
        ("chekcs: []", "gate checks: required; gate chekcs: unknown key 'chekcs'"),
        ("checks: [", "not valid YAML"),
        ("checks: [{type: threshold, metric: roc_auc, min: '0.7'}]", r"checks\.0\.threshold\.min"),
        ("checks: [{type: smoke_test, rows: '100'}]", r"smoke_test\.rows.*valid integer"),
        ("checks: [{type: smoke_test, rows: 1.5}]", r"smoke_test\.rows"),
        (
            "checks: [{type: slice_minimum, column: origin, metric: roc_auc, min: 1}]",
            "slice_minimum",
        ),
        ("checks: [{metric: roc_auc, min: 1}]", "needs a 'type'"),
        ("{name: 7, checks: [{type: schema_compatible}]}", r"gate name: .*valid string"),
        ("checks: {type: schema_compatible}", "gate checks"),
        ("- just a list", "a gate definition is a mapping"),
    ],
)
def test_bad_gate_definitions(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Gate.from_yaml(text)


def test_checks_built_in_python_are_validated_too() -> None:
    with pytest.raises(InvalidInputError, match="min: Input should be a valid number"):
        Threshold("roc_auc", min="0.7")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="needs min or max"):
        Threshold("roc_auc")
    with pytest.raises(InvalidInputError, match="max_drop must be >= 0"):
        NoWorseThanChampion("roc_auc", max_drop=-1)
    with pytest.raises(InvalidInputError, match="at least one check"):
        Gate(())
    assert Threshold("roc_auc", min=1).min == 1.0  # a whole number is a number
    assert Gate.from_dict(Gate((SmokeTest(rows=3),)).to_dict()).checks == (SmokeTest(rows=3),)


def test_gate_passes_then_refuses_then_rollback(
    workspace: Workspace,
    registry: Registry,
    flights: Flights,
    hgb_model: Any,
    weak_model: Any,
    gate: Gate,
) -> None:
    good = registry.register("delay", hgb_model, flights.X)
    first = promote(workspace, "delay", good.version, "champion", gate=gate, data=flights.eval)
    assert first.allowed, first.gate
    assert [c.check for c in first.gate.checks] == [
        "threshold",
        "no_worse_than_champion",
        "slice_threshold",
        "schema_compatible",
        "smoke_test",
    ]
    assert registry.resolve("delay@champion").version == good.version

    # A weak model on other columns: worse AUC and an incompatible schema.
    weak = registry.register("delay", weak_model, flights.train.select("distance"))
    refused = promote(workspace, "delay", weak.version, "champion", gate=gate, data=flights.eval)
    assert not refused.allowed
    verdicts = {c.check: c.passed for c in refused.gate.checks}
    assert verdicts["no_worse_than_champion"] is False
    assert verdicts["smoke_test"] is True
    assert registry.resolve("delay@champion").version == good.version  # did not move

    events = registry.history("delay", "champion")
    assert [e.allowed for e in events] == [True, False]
    refusal = events[-1]
    assert refusal.to_version == weak.version and refusal.from_version == good.version
    assert "refused" in refusal.reason and refusal.gate_result is not None
    recorded = {c["check"]: c for c in refusal.gate_result["checks"]}
    assert recorded["no_worse_than_champion"]["value"] < float(
        recorded["no_worse_than_champion"]["limit"].split()[-1]
    )
    execution = workspace.lineage.get_execution(refusal.execution_id or "")
    assert execution.kind == "promote" and execution.status == "refused"
    roles = {role for role, _ in workspace.lineage.artifacts_of(execution.id, "input")}
    assert {"candidate", "champion", "evaluation"} <= roles

    # Forced in without a gate, then rolled back.
    promote(workspace, "delay", weak.version, "champion", reason="hotfix")
    assert registry.resolve("delay@champion").version == weak.version
    back = registry.rollback("delay", "champion", reason="hotfix broke things")
    assert back.to_version == good.version
    assert registry.resolve("delay@champion").version == good.version


def test_absolute_threshold_refusal(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    strict = Gate((Threshold("roc_auc", min=0.99), Threshold("log_loss", max=5.0)), target=TARGET)
    result = promote(workspace, "delay", mv.version, "champion", gate=strict, data=flights.eval)
    assert not result.allowed
    first, second = result.gate.checks
    assert (first.passed, second.passed) == (False, True)
    assert first.limit == ">= 0.99" and 0.5 < first.value < 0.99
    stored = registry.history("delay")[-1].gate_result
    assert stored is not None and GateResult.from_dict(stored) == result.gate
    assert registry.aliases("delay") == {}


def test_slice_minimum_names_failing_slices(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    gate = Gate((SliceThreshold("origin", "accuracy", min=0.999),), target=TARGET)
    result = promote(workspace, "delay", mv.version, gate=gate, data=flights.eval)
    assert not result.allowed and "origin=JFK" in result.gate.checks[0].detail


def test_smoke_test_and_schema_without_data(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any, weak_model: Any
) -> None:
    a = registry.register("delay", hgb_model, flights.X)
    b = registry.register("delay", weak_model, flights.train.select("distance"))
    c = registry.register("delay", hgb_model, flights.X)
    gate = Gate((SchemaCompatible(), SmokeTest(max_latency_ms=60_000)))
    assert promote(workspace, "delay", a.version, gate=gate).allowed  # uses the input example
    assert promote(workspace, "delay", c.version, gate=gate).allowed
    # b takes a column subset: input that fits c fits b, so b is schema-compatible.
    assert promote(workspace, "delay", b.version, gate=gate).allowed
    back = promote(workspace, "delay", a.version, gate=gate)
    assert not back.allowed and "column 'month' is new" in back.gate.checks[0].detail


def test_tampered_candidate_fails_the_smoke_test(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    entry = max(workspace.artifacts.get_tree(mv.digest).entries, key=lambda e: e.size)
    with open(workspace.artifacts.path_of(entry.digest), "r+b") as f:
        f.seek(10)
        f.write(b"\x00\x01\x02")
    result = promote(workspace, "delay", mv.version, gate=Gate((SmokeTest(),)))
    assert not result.allowed and "corrupted" in result.gate.checks[0].detail
    assert registry.aliases("delay") == {}


def test_promote_mistakes(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any, gate: Gate
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    with pytest.raises(InvalidInputError, match="pass the labelled evaluation data"):
        promote(workspace, "delay", mv.version, gate=gate)
    promote(workspace, "delay", mv.version)
    with pytest.raises(ConflictError, match="already points to version 1"):
        promote(workspace, "delay", mv.version)
    with pytest.raises(InvalidInputError, match="positive integer"):
        promote(workspace, "delay", 0)
    assert isinstance(NoWorseThanChampion("roc_auc").describe(), str)


def test_policy_requires_its_gate_unless_forced(
    any_workspace: Workspace, flights: Flights, weak_model: Any
) -> None:
    workspace, registry = any_workspace, Registry(any_workspace)
    X = flights.train.select("distance")
    for _ in range(4):
        registry.register("delay", weak_model, X)
    required = Gate((SmokeTest(max_latency_ms=60_000),), name="ship-it")
    set_policy(workspace, "delay", required)
    assert policy(workspace, "delay") == required
    assert registry.models()[0].policy == required.to_dict()

    refused = promote(workspace, "delay", 1)
    assert not refused.allowed and "requires gate 'ship-it'" in refused.reason
    other = Gate((SchemaCompatible(),), name="lenient")
    assert not promote(workspace, "delay", 1, gate=other).allowed
    assert registry.aliases("delay") == {}

    assert promote(workspace, "delay", 1, gate=Gate.from_yaml(required.to_yaml())).allowed
    forced = promote(workspace, "delay", 2, force=True, reason="hotfix")
    assert forced.allowed and forced.forced and "forced past policy gate" in forced.reason
    assert promote(workspace, "delay", 3, gate=other, force=True).forced
    set_policy(workspace, "delay", None)
    assert not promote(workspace, "delay", 4).forced
    history = registry.history("delay", "champion")
    assert [(e.to_version, e.allowed, e.forced) for e in history] == [
        (1, False, False),
        (1, False, False),
        (1, True, False),
        (2, True, True),
        (3, True, True),
        (4, True, False),
    ]
    # A rollback walks back over forced promotions like any other.
    assert registry.rollback("delay").to_version == 3


def test_gate_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "gaet.yaml"
    for source in (missing, str(missing), "gates/prod.yml"):
        with pytest.raises(NotFoundError, match="does not exist"):
            Gate.load(source)
    path = tmp_path / "gate.yaml"
    path.write_text(GATE_YAML)
    assert Gate.load(str(path)) == Gate.load(path) == Gate.load(GATE_YAML)
    assert Gate.load("{checks: [{type: schema_compatible}]}").checks == (SchemaCompatible(),)
