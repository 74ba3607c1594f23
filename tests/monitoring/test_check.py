"""check() on real served traffic: drift where the data moved, performance as sklearn's."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn import metrics

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.demo.flights import TARGET
from loopml.monitor import check
from loopml.monitor.logs import read_predictions
from tests.monitoring.conftest import Traffic


def test_drift_flagged_where_the_data_moved_and_not_where_it_did_not(traffic: Traffic) -> None:
    same = check(traffic.ws, "delay-jan")
    moved = check(traffic.ws, "delay-jul")
    assert same.rows == 600 and moved.rows == 600
    assert same.versions == (1,) and same.model == "delay" and same.deployment == "delay-jan"
    assert same.reference == ("flights-jan:1",)
    assert same.drift is not None and moved.drift is not None
    for col in ("temp", "dewp"):
        assert col in moved.drift.drifted_columns
        assert col not in same.drift.drifted_columns
    assert moved.drift_score is not None and same.drift_score is not None
    assert moved.drift_score > same.drift_score
    assert same.prediction_drift is not None
    assert set(same.latency_ms) == {"p50", "p95", "p99"}
    assert 0 < same.latency_ms["p50"] <= same.latency_ms["p99"]


def test_realised_performance_equals_sklearn_on_the_joined_rows(traffic: Traffic) -> None:
    w = check(traffic.ws, "delay-jul")
    log = pl.from_arrow(read_predictions(traffic.ws, "delay-jul"))
    assert isinstance(log, pl.DataFrame)
    truth = pl.concat(
        [
            pl.DataFrame(
                {
                    "request_id": [rid] * chunk.height,
                    "row": list(range(chunk.height)),
                    "y": chunk[TARGET].to_list(),
                }
            )
            for rid, chunk in traffic.sent["delay-jul"].items()
            if rid in traffic.labelled["delay-jul"]
        ]
    ).with_columns(pl.col("row").cast(pl.Int32))
    joined = log.join(truth, on=["request_id", "row"])
    assert w.labelled_rows == joined.height == 300
    y = joined["y"].to_numpy()
    proba = np.array(joined["proba"].to_list())
    assert w.performance is not None
    assert w.performance["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y, proba[:, 1]), abs=1e-12
    )
    assert w.performance["accuracy"] == pytest.approx(
        metrics.accuracy_score(y, joined["prediction"].to_numpy()), abs=1e-12
    )
    assert w.performance["log_loss"] == pytest.approx(metrics.log_loss(y, proba), abs=1e-12)
    est = w.estimated_performance
    assert est is not None and 0.5 < est["roc_auc"] < 1.0 and 0 < est["accuracy"] <= 1


def test_model_name_covers_all_deployments(traffic: Traffic) -> None:
    w = check(traffic.ws, "delay")
    assert w.rows == 1200 and w.deployment is None and w.labelled_rows == 600


def test_bad_names_and_times_are_clear_errors(traffic: Traffic) -> None:
    with pytest.raises(NotFoundError, match="delay-jan"):
        check(traffic.ws, "nope")
    with pytest.raises(InvalidInputError, match="since"):
        check(traffic.ws, "delay-jan", since="yesterday")
    with pytest.raises(InvalidInputError, match="after"):
        check(traffic.ws, "delay-jan", since=10.0, until=5.0)
    with pytest.raises(InvalidInputError, match="finite"):
        check(traffic.ws, "delay-jan", since=float("nan"))


def test_windows_follow_the_event_times_sent_with_the_requests(traffic: Traffic) -> None:
    from datetime import UTC, datetime

    from loopml.monitor import history
    from tests.monitoring.conftest import flight_time

    per_day: dict[float, int] = {}
    for chunk in traffic.sent["delay-jan"].values():
        day = flight_time(chunk.row(0, named=True)) // 86_400 * 86_400
        per_day[day] = per_day.get(day, 0) + chunk.height
    h = history(traffic.ws, "delay-jan", window="1d")
    got = {row["start"].timestamp(): row["rows"] for row in h.iter_rows(named=True)}
    assert got == per_day and len(per_day) > 3
    assert all(s.year == 2013 and s.month == 1 for s in h["start"])
    day, rows = sorted(per_day.items())[1]
    one = check(traffic.ws, "delay-jan", since=datetime.fromtimestamp(day, UTC), until=day + 86_400)
    assert one.rows == rows and one.start.timestamp() == day
    weeks = history(traffic.ws, "delay-jan", window="7d")
    assert weeks["rows"].sum() == 600 and weeks.height < h.height
