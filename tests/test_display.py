"""Records print as short summaries and show as small tables in a notebook."""

from __future__ import annotations

from pathlib import Path

import polars as pl

import loopml as lm
from loopml.core.display import Summary


def test_summary_escapes_html_and_is_one_line() -> None:
    s = Summary("<b>x</b>", [("k", "<script>")], columns=["c"], rows=[["<i>"]])
    assert "<script>" not in s.html() and "&lt;script&gt;" in s.html()
    assert s.text() == "<<b>x</b>: k=<script>, 1 rows>"


def test_records_have_short_reprs_and_html(loopml_home: Path) -> None:
    with lm.start_run("flights", name="depth-4", params={"depth": 4}) as active:
        active.log_metric("auc", 0.71)
    run = lm.get_run(active.id)
    assert repr(run).startswith(f"<Run {run.id[:12]}: experiment=flights, name=depth-4")
    assert "auc=0.71" in repr(run) and "params" not in repr(run)
    assert "<table>" in run._repr_html_() and "depth-4" in run._repr_html_()
    runs = lm.search_runs()
    assert repr(runs) == "<RunList of 1 run: 1 rows>"
    assert "auc" in runs._repr_html_()
    frame = pl.DataFrame({"x": [1.0, 2.0, 3.0] * 50, "c": ["a", "b", "c"] * 50})
    ds = lm.datasets.add("d", frame, description="three values")
    assert repr(ds).startswith("<Dataset d:1: rows=150, columns=2")
    assert "Dataset d:1" in ds._repr_html_()
    report = lm.validate(frame.with_columns(x=pl.lit(None, pl.Float64)), ds.schema)
    assert repr(report).startswith("<ValidationReport ")
    assert "null" in report._repr_html_() or "<td>" in report._repr_html_()
    drift = lm.drift(ds, frame)
    assert repr(drift).startswith("<DriftReport: 0 of 2 columns drifted")
    assert "<th>p-value</th>" in drift._repr_html_()
    from sklearn.linear_model import LogisticRegression

    X = frame.select("x").to_pandas()
    mv = lm.models.register("m", LogisticRegression().fit(X, [0, 1, 1] * 50), X)
    assert repr(mv).startswith("<ModelVersion m:1: flavor=sklearn")
    assert "ModelVersion m:1" in mv._repr_html_()
