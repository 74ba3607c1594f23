from __future__ import annotations

import threading
from pathlib import Path

import loopml as lm


def test_fluent_api_from_the_issue(loopml_home: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"weights")
    with lm.start_run(experiment="flights", params={"lr": 0.1}) as run:
        run.log_metric("loss", 0.42, step=1)
        run.log_metrics({"auc": 0.74}, step=1)
        run.log_params({"depth": 6})
        run.set_tags({"team": "ops"})
        run.log_artifact(tmp_path / "model.pkl")
    found = lm.search_runs(
        experiment="flights",
        filter="metrics.auc > 0.7 and params.depth = '6'",
        order_by="metrics.auc desc",
        limit=50,
    )
    assert [r.id for r in found] == [run.id]
    assert lm.get_run(run.id).metrics == {"loss": 0.42, "auc": 0.74}
    assert lm.metric_history(run.id, "loss").values.tolist() == [0.42]
    assert (loopml_home / "loopml.db").exists()
    assert found.to_pandas().loc[0, "params.lr"] == "0.1"


def test_changing_loopml_home_switches_workspace(
    loopml_home: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    with lm.start_run("a"):
        pass
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "other"))
    assert lm.search_runs() == []


def test_lm_active_run_is_the_newest_unended_run(loopml_home: Path) -> None:
    assert lm.active_run() is None
    with lm.start_run("a") as outer:
        assert lm.active_run() is outer
        with lm.start_run("b") as inner:
            assert lm.active_run() is inner
        assert lm.active_run() is outer
        seen: list[object] = []
        worker = threading.Thread(target=lambda: seen.append(lm.active_run()))
        worker.start()
        worker.join(timeout=60)
        assert seen == [None]  # another thread has runs of its own
    assert lm.active_run() is None
