"""The same assertions on the Python API in every mode: local (the stores), remote (a real
``loopml server`` on SQLite + a folder) and remote on PostgreSQL + S3."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

import loopml as lm
from loopml.api import config
from loopml.core import hashing
from loopml.tracking import environment
from tests.remote.conftest import Target


def experiment() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"


def test_a_run_reads_back_what_was_logged(api: Target) -> None:
    exp = experiment()
    with lm.start_run(exp, name="first", params={"lr": 0.1, "depth": 6}, tags={"team": "x"}) as run:
        for i in range(12_000):
            run.log_metric("loss", 1.0 / (i + 1))
        run.log_metrics({"auc": 0.7, "acc": 0.9}, step=3)
        run.log_metric("auc", 0.75)  # step 4: steps continue per metric
        run.log_params({"optimizer": "adam"})
        run.log_param("lr", 0.1)  # the same value again is fine
        run.set_tag("stage", "dev")
        run.set_tags({"team": "y"})  # tags may change
    got = lm.get_run(run.id)
    assert (got.id, got.experiment, got.name, got.status) == (run.id, exp, "first", "finished")
    assert got.params == {"lr": "0.1", "depth": "6", "optimizer": "adam"}
    assert got.tags["stage"] == "dev" and got.tags["team"] == "y"
    assert got.metrics == {"loss": 1.0 / 12_000, "auc": 0.75, "acc": 0.9}
    assert got.end_time is not None and got.end_time >= got.start_time
    # Who started it: the token's name through the server, the OS user locally.
    assert got.created_by == ("ci" if api.remote else config.os_user())
    # What the run ran on is captured on the machine that runs it, in both modes.
    assert got.environment_digest == environment.python_environment().digest
    assert got.git_commit is None  # the test runs outside any git checkout
    history = lm.metric_history(run.id, "loss")
    assert len(history) == history.total_points == 12_000
    assert history.steps.tolist() == list(range(12_000))
    np.testing.assert_allclose(history.values, 1.0 / np.arange(1, 12_001))
    auc = lm.metric_history(run.id, "auc")
    assert auc.steps.tolist() == [3, 4] and auc.values.tolist() == [0.7, 0.75]
    small = lm.metric_history(run.id, "loss", max_points=10)
    assert small.downsampled and len(small) <= 10 and small.total_points == 12_000
    assert small.max is not None and small.max[0] == 1.0
    # More buckets than the server draws itself: the client buckets the full series alike.
    big = lm.metric_history(run.id, "loss", max_points=11_000)
    assert big.downsampled and 6000 <= len(big) <= 11_000 and big.total_points == 12_000
    assert big.min is not None and big.min.min() == history.values.min()


def test_explicit_steps_and_timestamps_are_kept(api: Target) -> None:
    with lm.start_run(experiment()) as run:
        run.log_metric("m", 1.5, step=-7, timestamp=1_700_000_000.25)
        run.log_metric("m", 2.5, step=2**40, timestamp=1_700_000_001.5)
    h = lm.metric_history(run.id, "m")
    assert h.steps.tolist() == [-7, 2**40]
    assert h.timestamps.tolist() == [1_700_000_000.25, 1_700_000_001.5]
    assert lm.get_run(run.id).metrics == {"m": 2.5}


def test_an_exception_fails_the_run_and_keeps_what_was_logged(api: Target) -> None:
    with pytest.raises(RuntimeError, match="diverged"), lm.start_run(experiment()) as run:
        run.log_metric("loss", 0.5)
        raise RuntimeError("diverged")
    got = lm.get_run(run.id)
    assert got.status == "failed"
    assert got.error is not None and "RuntimeError: diverged" in got.error
    assert got.metrics == {"loss": 0.5}


def test_search_filters_orders_and_limits(api: Target) -> None:
    exp, other = experiment(), experiment()
    ids = {}
    for depth, auc in ((2, 0.61), (4, 0.72), (8, 0.68)):
        with lm.start_run(exp, name=f"d{depth}", params={"depth": depth}) as run:
            run.log_metric("auc", auc)
        ids[depth] = run.id
    with lm.start_run(other, params={"depth": 4}) as run:
        run.log_metric("auc", 0.99)
    found = lm.search_runs(exp, filter="metrics.auc > 0.65", order_by="metrics.auc desc")
    assert [r.id for r in found] == [ids[4], ids[8]]
    assert [r.name for r in lm.search_runs(exp, filter="params.depth = '2'")] == ["d2"]
    assert len(lm.search_runs([exp, other], filter="params.depth = '4'")) == 2
    assert [r.id for r in lm.search_runs(exp, order_by=["metrics.auc asc"], limit=2)] == [
        ids[2],
        ids[8],
    ]
    assert lm.search_runs(exp, filter="metrics.auc > 0.9") == []
    # Newest first by default.
    assert [r.name for r in lm.search_runs(exp)] == ["d8", "d4", "d2"]
    frame = lm.search_runs(exp).to_pandas()
    assert sorted(frame["metrics.auc"]) == [0.61, 0.68, 0.72]


def test_bad_input_is_a_clear_error_that_leaves_nothing(api: Target) -> None:
    exp = experiment()
    with pytest.raises(lm.InvalidInputError, match="experiment name"):
        lm.start_run("bad\nname")
    with pytest.raises(lm.InvalidInputError, match="reserved"):
        lm.start_run(exp, params={"loopml.x": 1})
    with pytest.raises(lm.InvalidInputError, match="6000"):
        lm.start_run(exp, params={"big": "x" * 6001})
    assert lm.search_runs(exp) == []  # refused starts leave no run
    with pytest.raises(lm.NotFoundError, match="no run"):
        lm.get_run("no-such-run")
    with pytest.raises(lm.InvalidInputError):
        lm.get_run("")
    with pytest.raises(lm.InvalidInputError, match="cannot parse filter"):
        lm.search_runs(exp, filter="metrics.auc >")
    with pytest.raises(lm.InvalidInputError, match="order_by"):
        lm.search_runs(exp, order_by="metrics.auc desc; DROP TABLE runs")
    with pytest.raises(lm.InvalidInputError, match="limit"):
        lm.search_runs(exp, limit=0)
    with pytest.raises(lm.InvalidInputError, match="max_points"):
        lm.metric_history("x", "loss", max_points=1)
    with lm.start_run(exp, params={"lr": 0.1}) as run:
        with pytest.raises(lm.InvalidInputError, match="finite"):
            run.log_metric("loss", math.nan)
        with pytest.raises(lm.InvalidInputError, match="must be a number"):
            run.log_metric("loss", "high")  # type: ignore[arg-type]
        with pytest.raises(lm.InvalidInputError, match="metric name"):
            run.log_metric("bad\nkey", 1.0)
        with pytest.raises(lm.ConflictError, match="cannot change"):
            run.log_params({"lr": 0.2})
        with pytest.raises(lm.InvalidInputError, match="tag name"):
            run.set_tags({"ok": "1", "bad\n": "2"})
        run.log_metric("loss", 0.25)
    got = lm.get_run(run.id)
    assert got.params == {"lr": "0.1"} and "ok" not in got.tags
    assert got.metrics == {"loss": 0.25} and got.status == "finished"
    with pytest.raises(lm.ConflictError, match="has ended"):
        run.log_metric("loss", 0.1)
    with pytest.raises(lm.NotFoundError, match="no metric"):
        lm.metric_history(run.id, "nothing")


def test_models_and_datasets_round_trip(api: Target) -> None:
    me = "ci" if api.remote else config.os_user()
    name = experiment()
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    table = pl.DataFrame({"x": x, "y": (x > 0).astype(np.int64)})
    ds = lm.datasets.add(name, table, description="train")
    assert (ds.version, ds.num_rows, ds.created_by) == (1, 200, me)
    back = lm.datasets.get(f"{name}:1")
    assert back.digest == ds.digest and back.to_polars().equals(table)
    assert back.profile.num_rows == 200
    model = LogisticRegression().fit(table.select("x").to_pandas(), table["y"].to_numpy())
    with lm.start_run(name) as run:
        run.log_metric("acc", 0.9)
    mv = lm.models.register(name, model, table.select("x"), run=run, datasets=[ds])
    assert (mv.version, mv.run_id, mv.created_by) == (1, run.id, me)
    assert mv.dataset_artifact_ids == (ds.artifact_id,)
    result = lm.models.promote(name, 1, "champion", reason="first")
    assert result.allowed and result.event.created_by == me
    got = lm.models.get(f"{name}@champion")
    assert (got.version, got.digest, got.aliases) == (1, mv.digest, ("champion",))
    loaded = lm.models.load(f"{name}@champion")
    expected = model.predict(table.select("x").to_pandas())
    np.testing.assert_array_equal(loaded.predict(table.select("x").to_pandas()), expected)
    assert [e.to_version for e in lm.models.history(name)] == [1]
    with pytest.raises(lm.NotFoundError):
        lm.models.load(f"{name}@nobody")
    with pytest.raises(lm.ConflictError):
        lm.models.promote(name, 1, "champion")


def test_dataset_catalog_calls_behave_alike(api: Target) -> None:
    me = "ci" if api.remote else config.os_user()
    name = experiment()
    jan = pl.DataFrame({"delay": [1.0, -3.0, 12.5], "carrier": ["UA", "AA", "UA"]})
    feb = pl.DataFrame({"delay": [4.0, 7.5], "carrier": ["B6", "UA"]})
    v1 = lm.datasets.add(name, jan, description="January", tags={"team": "ops"})
    v2 = lm.datasets.append(name, feb, description="plus February")
    assert (v2.version, v2.num_rows, v2.created_by, v2.description) == (2, 5, me, "plus February")
    assert v2.to_polars().equals(pl.concat([jan, feb]))
    assert v2.profile.num_rows == 5 and v2.verify() > 0
    # What the server's database holds: the schema, and the append in the lineage graph.
    assert v1.schema is not None and [c.name for c in v1.schema.columns] == ["delay", "carrier"]
    assert v1.artifact_id in v2.lineage("upstream").artifacts
    assert v2.artifact_id in v1.lineage().artifacts
    assert [v.version for v in lm.datasets.versions(name)] == [1, 2]
    assert [v.digest for v in lm.datasets.versions(name)] == [v1.digest, v2.digest]
    entry = lm.datasets.info(name)
    assert (entry.latest_version, entry.num_versions, entry.tags) == (2, 2, {"team": "ops"})
    assert name in [d.name for d in lm.datasets.list_datasets()]
    assert [d.name for d in lm.datasets.search(name.upper(), tag="team")] == [name]
    assert [d.name for d in lm.datasets.search(name, column="carrier")] == [name]
    assert lm.datasets.search(name, column="nothing") == []
    edited = lm.datasets.update(name, owner="ml", column_descriptions={"delay": "minutes"})
    assert (edited.owner, edited.column_descriptions) == ("ml", {"delay": "minutes"})
    schema = lm.datasets.schema(name)
    assert schema == v2.schema
    curated = schema.with_column("delay", description="minutes late", max=600.0)
    number = lm.datasets.save_schema(name, curated, note="curated")
    assert lm.datasets.schema(name) == curated == lm.datasets.schema(name, number)
    assert lm.datasets.schema_versions(name)[-1].note == "curated"
    report = lm.datasets.verify(name)
    assert report.ok and report.versions == 2 and report.blobs > 0
    assert lm.validate(feb, f"{name}:2").ok


def test_bad_dataset_calls_are_clear_errors_that_change_nothing(api: Target) -> None:
    name = experiment()
    table = pl.DataFrame({"delay": [1.0, 2.0]})
    lm.datasets.add(name, table)
    with pytest.raises(lm.InvalidInputError, match="cannot append"):
        lm.datasets.append(name, pl.DataFrame({"delay": ["late"]}))
    with pytest.raises(lm.InvalidInputError, match="no rows"):
        lm.datasets.append(name, table.clear())
    with pytest.raises(lm.NotFoundError, match="no dataset"):
        lm.datasets.append(experiment(), table)
    with pytest.raises(lm.InvalidInputError, match="dataset name"):
        lm.datasets.append("bad/name", table)
    with pytest.raises(lm.NotFoundError, match="no dataset"):
        lm.datasets.info(experiment())
    with pytest.raises(lm.NotFoundError, match="schema version 9"):
        lm.datasets.schema(name, 9)
    with pytest.raises(lm.InvalidInputError, match="column_descriptions"):
        lm.datasets.update(name, column_descriptions={"nothing": "x"})
    with pytest.raises(lm.InvalidInputError, match="tags"):
        lm.datasets.update(name, tags="not-a-list")
    assert [v.version for v in lm.datasets.versions(name)] == [1]
    assert lm.datasets.info(name).column_descriptions == {}


def test_artifacts_are_logged_alike(api: Target, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"auc went up\n\x00\xff")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "roc.svg").write_text("<svg/>")
    (folder / "sub" / "pr.svg").write_text("<svg></svg>")
    with lm.start_run(experiment()) as run:
        a = run.log_artifact(notes)
        b = run.log_artifact(folder, name="figures/plots")
        for bad in ("../notes.txt", "/notes.txt", "a/./b", "loopml.notes"):
            with pytest.raises(lm.InvalidInputError):
                run.log_artifact(notes, name=bad)
        with pytest.raises(lm.NotFoundError, match="nothing at"):
            run.log_artifact(tmp_path / "absent.txt")
    assert (a.name, a.kind, a.size) == ("notes.txt", "file", 14)
    assert a.digest == hashing.digest_file(str(notes))[0]
    assert (b.name, b.kind, b.size) == ("figures/plots", "tree", 17)
    with pytest.raises(lm.ConflictError, match="has ended"):
        run.log_artifact(notes)


def test_rollback_policy_evaluation_and_card(api: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.metrics import roc_auc_score

    me = "ci" if api.remote else config.os_user()
    name = experiment()
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    table = pl.DataFrame(
        {"x": x, "g": np.where(x > 1, "high", "low"), "y": (x + rng.normal(size=300) > 0) * 1}
    )
    holdout = lm.datasets.add(f"{name}-holdout", table.tail(100))
    X, y = table.head(200).select("x"), table.head(200)["y"].to_numpy()
    first = LogisticRegression().fit(X.to_pandas(), y)
    lm.models.register(name, first, X)
    lm.models.register(name, LogisticRegression(C=1e-4).fit(X.to_pandas(), 1 - y), X)
    lm.models.promote(name, 1)
    lm.models.promote(name, 2)
    event = lm.models.rollback(name, reason="version 2 misbehaves")
    assert (event.action, event.from_version, event.to_version) == ("rollback", 2, 1)
    assert (event.created_by, event.reason) == (me, "version 2 misbehaves")
    assert lm.models.get(f"{name}@champion").version == 1
    assert lm.models.history(name)[-1].action == "rollback"
    (listed,) = [m for m in lm.models.list_models() if m.name == name]
    assert (listed.latest_version, listed.aliases) == (2, {"champion": 1})
    with pytest.raises(lm.ConflictError, match="no earlier version"):
        lm.models.rollback(name)
    with pytest.raises(lm.NotFoundError, match="no alias 'nobody'"):
        lm.models.rollback(name, "nobody")
    with pytest.raises(lm.InvalidInputError):
        lm.models.rollback(name, "bad alias!")

    # A policy: promotions without its gate are refused (and recorded), until it is lifted.
    assert lm.models.policy(name) is None
    gate = lm.models.gate(lm.models.Threshold("roc_auc", min=0.5), target="y", name="floor")
    lm.models.set_policy(name, gate)
    got = lm.models.policy(name)
    assert got is not None and got.to_dict() == gate.to_dict()
    refused = lm.models.promote(name, 2, raise_on_refusal=False)
    assert not refused.allowed and "requires gate 'floor'" in refused.reason
    lm.models.set_policy(name, None)
    assert lm.models.policy(name) is None
    with pytest.raises(lm.NotFoundError):
        lm.models.policy(f"{name}-nobody")
    with pytest.raises(lm.InvalidInputError, match="model name"):
        lm.models.set_policy("bad name!", None)

    # An evaluation runs the model (on the server: with an admin token there).
    if api.remote:
        monkeypatch.setenv("LOOPML_TOKEN", api.tokens["boss"])
    with lm.start_run(name) as run:
        result = lm.models.evaluate(
            f"{name}@champion", f"{holdout.name}:1", "y", slice_by="g", run=run
        )
    scored = holdout.to_polars()
    expected = roc_auc_score(scored["y"], first.predict_proba(scored.select("x").to_pandas())[:, 1])
    assert result.metrics["roc_auc"] == pytest.approx(expected)
    assert result.n_rows == 100 and {s.value for s in result.slices["g"]} == {"high", "low"}
    assert result.digest is not None and result.digest.startswith("b3:")
    assert lm.get_run(run.id).metrics["eval/roc_auc"] == pytest.approx(expected)
    with pytest.raises(lm.NotFoundError):
        lm.models.evaluate(f"{name}:9", f"{holdout.name}:1", "y")
    with pytest.raises(lm.NotFoundError):
        lm.models.evaluate(f"{name}:1", f"{name}-no-such-data", "y")
    with pytest.raises(lm.InvalidInputError, match="nope"):
        lm.models.evaluate(f"{name}:1", f"{holdout.name}:1", "nope")

    # The card shows the evaluation just stored: it was linked to the model version.
    card = lm.models.card(f"{name}@champion")
    assert card.startswith(f"# Model card: {name}:1")
    assert "On 100 rows, target `y`." in card and "### Slices by `g`" in card
    with pytest.raises(lm.NotFoundError):
        lm.models.card(f"{name}:9")


def test_add_takes_the_same_options_in_both_modes(api: Target, tmp_path: Path) -> None:
    name = experiment()
    csv = tmp_path / "jan.csv"
    csv.write_text("delay;carrier\n1.5;UA\n-2.0;AA\n")
    v1 = lm.datasets.add(
        name, csv, csv_options={"separator": ";"}, column_descriptions={"delay": "minutes"}
    )
    assert v1.num_rows == 2 and v1.to_polars()["carrier"].to_list() == ["UA", "AA"]
    assert lm.datasets.info(name).column_descriptions == {"delay": "minutes"}
    assert v1.schema is not None
    curated = v1.schema.with_column("delay", max=600.0)
    v2 = lm.datasets.add(name, pl.DataFrame({"delay": [3.0], "carrier": ["B6"]}), schema=curated)
    assert v2.schema == curated
    with pytest.raises(lm.InvalidInputError, match="column_descriptions"):
        lm.datasets.add(name, csv, csv_options={"separator": ";"}, column_descriptions={"x": "?"})
    assert [v.version for v in lm.datasets.versions(name)] == [1, 2]
