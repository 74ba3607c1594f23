"""The fluent API, the ``loopml models`` CLI and model cards, on a LOOPML_HOME workspace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loopml.api import fluent
from loopml.api import models as lm_models
from loopml.cli.models_cmd import app
from loopml.core.errors import ConflictError, NotFoundError
from loopml.demo.flights import TARGET
from loopml.demo.training import to_pandas_features
from loopml.registry.gates import (
    Gate,
    NoWorseThanChampion,
    SchemaCompatible,
    SliceThreshold,
    SmokeTest,
    Threshold,
)
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from tests.models.conftest import Flights, git_checkout

runner = CliRunner()

GATE = """
name: cli-gate
target: delayed
checks:
  - {type: threshold, metric: roc_auc, min: 0.6}
  - {type: no_worse_than_champion, metric: roc_auc, max_drop: 0.0}
"""


def test_fluent_register_promote_load_rollback(
    loopml_home: Path,
    flights: Flights,
    hgb_model: Any,
    weak_model: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commit = git_checkout(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    with fluent.start_run("flights") as run:
        mv = lm_models.register("delay-model", hgb_model, flights.X, run=run)
        result = lm_models.evaluate("delay-model:1", flights.eval, TARGET, run=run)
    assert mv.version == 1 and mv.run_id == run.id
    assert mv.code_version == commit  # the run's git commit, handed over by the API
    assert fluent.get_run(run.id).metrics["eval/roc_auc"] == pytest.approx(
        result.metrics["roc_auc"]
    )
    gate = lm_models.gate(lm_models.Threshold("roc_auc", min=0.6), target=TARGET)
    lm_models.promote("delay-model", 1, alias="champion", gate=gate, data=flights.eval)
    weak = lm_models.register("delay-model", weak_model, flights.train.select("distance"))
    with pytest.raises(lm_models.PromotionRefusedError) as refused:
        lm_models.promote("delay-model", weak.version, gate=GATE, data=flights.eval)
    assert not refused.value.result.allowed
    assert lm_models.get("delay-model@champion").version == 1
    lm_models.promote("delay-model", weak.version, reason="manual override")
    assert lm_models.rollback("delay-model").to_version == 1
    assert lm_models.load("delay-model@champion").predict(flights.eval).shape == (
        flights.eval.height,
    )
    assert [v.version for v in lm_models.versions("delay-model")] == [1, 2]
    assert len(lm_models.history("delay-model", "champion")) == 4
    card = lm_models.card("delay-model:1")
    assert "# Model card: delay-model:1" in card and "roc_auc" in card and run.id in card


def test_cli(loopml_home: Path, flights: Flights, hgb_model: Any, weak_model: Any) -> None:
    lm_models.register("delay-model", hgb_model, flights.X, description="good")
    lm_models.register("delay-model", weak_model, flights.train.select("distance"))
    gate_file = loopml_home.parent / "gate.yaml"
    gate_file.write_text(GATE)
    data_file = loopml_home.parent / "eval.parquet"
    flights.eval.write_parquet(data_file)

    ok = runner.invoke(
        app, ["promote", "delay-model", "1", "-g", str(gate_file), "-d", str(data_file)]
    )
    assert ok.exit_code == 0, ok.output
    assert "roc_auc >= 0.6" in ok.output and "pass" in ok.output and "promoted" in ok.output

    bad = runner.invoke(
        app, ["promote", "delay-model", "2", "-g", str(gate_file), "-d", str(data_file)]
    )
    assert bad.exit_code == 1
    assert "FAIL" in bad.output and "refused" in bad.output

    listing = runner.invoke(app, ["ls"])
    assert (
        listing.exit_code == 0 and "delay-model" in listing.output and "champion" in listing.output
    )
    versions = runner.invoke(app, ["ls", "delay-model"])
    assert versions.exit_code == 0 and "good" in versions.output
    shown = runner.invoke(app, ["show", "delay-model@champion"])
    assert shown.exit_code == 0 and "distance" in shown.output and "alias history" in shown.output

    card_file = loopml_home.parent / "card.md"
    assert runner.invoke(app, ["card", "delay-model:1", "-o", str(card_file)]).exit_code == 0
    assert "## Alias history" in card_file.read_text()

    # With a policy, a promotion without its gate is refused unless forced.
    lm_models.set_policy("delay-model", gate_file)
    assert lm_models.policy("delay-model").name == "cli-gate"  # type: ignore[union-attr]
    unforced = runner.invoke(app, ["promote", "delay-model", "2", "--reason", "try it"])
    assert unforced.exit_code == 1 and "requires gate 'cli-gate'" in unforced.output
    forced = runner.invoke(app, ["promote", "delay-model", "2", "--reason", "try it", "--force"])
    assert forced.exit_code == 0, forced.output
    assert lm_models.history("delay-model", "champion")[-1].forced
    missing_gate = runner.invoke(app, ["promote", "delay-model", "1", "-g", "gaet.yaml"])
    assert isinstance(missing_gate.exception, NotFoundError)
    assert "does not exist" in str(missing_gate.exception)
    back = runner.invoke(app, ["rollback", "delay-model"])
    assert back.exit_code == 0 and "2 -> 1" in back.output

    # User mistakes surface as loopml errors for the app's single error handler.
    missing = runner.invoke(app, ["show", "nope"])
    assert isinstance(missing.exception, NotFoundError)
    again = runner.invoke(app, ["rollback", "delay-model"])
    assert isinstance(again.exception, ConflictError)


def test_a_five_check_gate_promotes_then_passes_an_equal_candidate(
    workspace: Any, flights: Flights, hgb_model: Any
) -> None:
    """Every kind of check in one gate, on held-out flights: the first version is promoted,
    and a second with the same AUC is no worse than the champion. (Was the old demo's
    model stage, on the library calls it made.)"""
    gate = Gate(
        (
            Threshold("roc_auc", min=0.65),
            NoWorseThanChampion("roc_auc", max_drop=0.01),
            SliceThreshold("origin", "roc_auc", min=0.6, min_rows=500),
            SchemaCompatible(),
            # A latency budget no loaded machine misses: the verdict must not depend on load.
            SmokeTest(max_latency_ms=600_000, rows=100),
        ),
        target=TARGET,
        name="delay-gate",
    )
    registry = Registry(workspace)
    results = []
    for _ in range(2):
        mv = registry.register("delay-model", hgb_model, to_pandas_features(flights.train))
        results.append(
            promote(workspace, "delay-model", mv.version, gate=gate, data=flights.holdout)
        )
    first, second = results
    assert first.allowed and first.version == 1 and first.gate is not None
    assert [row[3] for row in first.gate.rows()] == ["pass"] * 5
    assert second.allowed and second.from_version == 1  # equal AUC: no worse than champion
    assert registry.aliases("delay-model") == {"champion": 2}


def test_import_stays_light() -> None:
    code = (
        "import sys, loopml.api.models, loopml.registry.model_registry, loopml.registry.gates, "
        "loopml.cli.models_cmd\n"
        "heavy = {'sklearn', 'xgboost', 'lightgbm', 'torch', 'onnxruntime', 'skl2onnx'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
