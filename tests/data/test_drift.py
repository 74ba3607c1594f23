from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from plotly.offline import get_plotlyjs
from scipy import stats

from loopml.core.errors import InvalidInputError
from loopml.data.drift import drift
from loopml.data.profile import profile
from loopml.data.report import render_html, write_html

SEASONAL = {"temp", "dewp"}
STABLE = {"hour", "sched_dep_time", "carrier", "origin", "weekday"}


def test_seasonal_columns_drift_stable_ones_do_not(
    jan_feb: pl.DataFrame, jul_aug: pl.DataFrame
) -> None:
    report = drift(profile(jan_feb), profile(jul_aug))
    drifted = set(report.drifted_columns)
    assert drifted >= SEASONAL
    assert not STABLE & drifted
    assert report["temp"].method == "wasserstein" and report["carrier"].method == "js"
    assert report.reference_rows == jan_feb.height


def test_no_drift_between_random_halves(jan_feb: pl.DataFrame) -> None:
    shuffled = jan_feb.sample(fraction=1.0, shuffle=True, seed=3)
    half = shuffled.height // 2
    report = drift(shuffled.head(half), shuffled.tail(shuffled.height - half))
    assert report.drifted_columns == []


def test_ks_from_histograms_matches_scipy(jan_feb: pl.DataFrame, jul_aug: pl.DataFrame) -> None:
    report = drift(jan_feb, jul_aug, method="ks")
    for name in ("temp", "humid", "distance", "pressure"):
        a, b = jan_feb[name].drop_nulls().to_numpy(), jul_aug[name].drop_nulls().to_numpy()
        exact = stats.ks_2samp(a, b).statistic
        ours = report[name].statistic
        # Binned KS is the exact KS at bin edges: never above, and close to, the raw one.
        assert ours <= exact + 1e-12
        assert ours == pytest.approx(exact, abs=0.02)
        w = stats.wasserstein_distance(a, b)
        assert report[name].stats["wasserstein"] == pytest.approx(w, rel=0.05, abs=0.05)


def test_small_samples_use_p_values() -> None:
    rng = np.random.default_rng(0)
    ref = pl.DataFrame({"x": rng.normal(0, 1, 500), "c": rng.choice(["a", "b", "c"], 500)})
    same = pl.DataFrame({"x": rng.normal(0, 1, 400), "c": rng.choice(["a", "b", "c"], 400)})
    moved = pl.DataFrame(
        {"x": rng.normal(1, 1, 400), "c": rng.choice(["a", "b", "c"], 400, p=[0.6, 0.2, 0.2])}
    )
    calm = drift(ref, same)
    assert calm["x"].method == "ks" and calm["c"].method == "chi2"
    assert calm.drifted_columns == []
    loud = drift(ref, moved)
    assert set(loud.drifted_columns) == {"x", "c"}
    assert loud["x"].p_value is not None and loud["x"].p_value < 1e-6
    expected = stats.chi2_contingency(
        [[ref["c"].eq(v).sum() for v in "abc"], [moved["c"].eq(v).sum() for v in "abc"]],
        correction=False,
    )
    assert loud["c"].statistic == pytest.approx(expected.statistic)
    assert loud["c"].p_value == pytest.approx(expected.pvalue)


def test_methods_thresholds_and_skips(jan_feb: pl.DataFrame, jul_aug: pl.DataFrame) -> None:
    report = drift(
        jan_feb,
        jul_aug.with_columns(pl.col("carrier").cast(pl.Categorical)).drop("visib"),
        method={"temp": "psi", "dest": "chi2"},
        threshold={"temp": 100.0},
    )
    assert report["temp"].method == "psi" and not report["temp"].drifted
    assert report["dest"].method == "chi2"
    assert report.skipped["visib"] == "missing from the current data"
    with pytest.raises(InvalidInputError, match="does not apply to categorical"):
        drift(jan_feb, jul_aug, method={"carrier": "ks"})
    with pytest.raises(InvalidInputError, match="not in the reference"):
        drift(jan_feb, jul_aug, columns=["nope"])
    with pytest.raises(InvalidInputError, match="reference"):
        drift([1, 2], jul_aug)
    with pytest.raises(InvalidInputError, match="no drift result for column 'visib'"):
        report["visib"]


def test_kind_change_is_skipped(jan_feb: pl.DataFrame) -> None:
    report = drift(jan_feb, jan_feb.with_columns(pl.col("temp").cast(pl.String)))
    assert "kind changed" in report.skipped["temp"]


def test_html_report_is_self_contained(
    jan_feb: pl.DataFrame, jul_aug: pl.DataFrame, tmp_path: Path
) -> None:
    ref, cur = profile(jan_feb), profile(jul_aug)
    report = drift(ref, cur, columns=["temp", "carrier"])
    text = render_html(report, ref, cur, reference_label="jan-feb", current_label="jul-aug")
    assert "<script src=" not in text  # nothing is fetched when the file is opened
    assert get_plotlyjs()[:200] in text
    assert text.count('class="plotly-graph-div"') == 2
    assert "temp" in text and "jul-aug" in text
    out = write_html(report, ref, cur, str(tmp_path / "r.html"))
    assert Path(out).read_text(encoding="utf-8").startswith("<!doctype html>")
    assert report.to_dict()["drifted_columns"] == ["temp"]
