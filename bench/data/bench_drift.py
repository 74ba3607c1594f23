"""Drift on 1M x 25 against a stored reference profile vs Evidently and per-column scipy.

Run: python bench/data/bench_drift.py [rows]   (Evidently runs in the venv of _common.py)

Half the columns get a known shift; the others are fresh samples of the same
distribution. Every tool must flag the same columns.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import polars as pl
from _common import machine, row, timed, venv_run
from scipy import stats

from loopml.data.drift import drift
from loopml.data.profile import Profile, profile

N_NUMERIC, N_CATEGORICAL = 20, 5
SHIFTED = {f"n{i}" for i in range(0, N_NUMERIC, 2)} | {"c0", "c2"}

EVIDENTLY = r"""
import json, sys, time
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
cats = [c for c in ref.columns if c.startswith("c")]
nums = [c for c in ref.columns if c.startswith("n")]
t = time.perf_counter()
dd = DataDefinition(numerical_columns=nums, categorical_columns=cats)
r = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd)
)
res = r.dict()
elapsed = time.perf_counter() - t
flagged = []
for m in res["metrics"]:
    cfg = m.get("config", {})
    col = cfg.get("column")
    if col is not None and "ValueDrift" in cfg.get("type", ""):
        thr = cfg["threshold"]
        value = m["value"]
        drifted = value < thr if "p_value" in cfg["method"].lower() else value >= thr
        if drifted:
            flagged.append(col)
print(json.dumps({"seconds": elapsed, "flagged": sorted(flagged)}))
"""


def make(rows: int, seed: int, shifted: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(N_NUMERIC):
        move = 0.5 * (1 + i % 3) if shifted and f"n{i}" in SHIFTED else 0.0
        cols[f"n{i}"] = rng.normal(10 * i + move * (1 + i), 1 + i, rows)
    for i in range(N_CATEGORICAL):
        k = 4 + 3 * i
        p = np.full(k, 1 / k)
        if shifted and f"c{i}" in SHIFTED:
            p = np.linspace(1, 3, k)
            p /= p.sum()
        cols[f"c{i}"] = rng.choice([f"v{j}" for j in range(k)], rows, p=p)
    return pl.DataFrame(cols)


def scipy_drift(ref: pl.DataFrame, cur: pl.DataFrame, alpha: float) -> list[str]:
    flagged = []
    for name in ref.columns:
        if name.startswith("n"):
            p = stats.ks_2samp(ref[name].to_numpy(), cur[name].to_numpy()).pvalue
        else:
            a = ref[name].value_counts().rename({"count": "a"})
            b = cur[name].value_counts().rename({"count": "b"})
            t = a.join(b, on=name, how="full", coalesce=True).fill_null(0)
            p = stats.chi2_contingency(t.select("a", "b").to_numpy().T).pvalue
        if p < alpha:
            flagged.append(name)
    return sorted(flagged)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    ref, cur = make(rows, 1, False), make(rows, 2, True)
    print(f"{rows:,} vs {rows:,} rows x {ref.width} columns on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        stored = os.path.join(tmp, "ref.json")
        with open(stored, "w") as f:  # the reference profile as stored at `add` time
            f.write(profile(ref).to_json())

        def loopml_auto() -> list[str]:
            with open(stored) as f:
                reference = Profile.from_json(f.read())
            return sorted(drift(reference, cur).drifted_columns)

        def loopml_pvalues() -> list[str]:
            with open(stored) as f:
                reference = Profile.from_json(f.read())
            report = drift(
                reference,
                cur,
                method={
                    **{c: "ks" for c in ref.columns if c[0] == "n"},
                    **{c: "chi2" for c in ref.columns if c[0] == "c"},
                },
                threshold=0.01,
            )
            return sorted(report.drifted_columns)

        t_auto, flagged_auto = timed(loopml_auto, repeat=3)
        t_p, flagged_p = timed(loopml_pvalues, repeat=3)
        t_scipy, flagged_scipy = timed(lambda: scipy_drift(ref, cur, 0.01), repeat=1)
        ref_path, cur_path = os.path.join(tmp, "ref.parquet"), os.path.join(tmp, "cur.parquet")
        ref.write_parquet(ref_path)
        cur.write_parquet(cur_path)
        evidently = json.loads(venv_run(EVIDENTLY, ref_path, cur_path))
    expected = sorted(SHIFTED)
    print()

    def verdict(flagged: list[str]) -> str:
        return "= truth" if flagged == expected else str(flagged)

    ev_seconds, ev_flagged = evidently["seconds"], evidently["flagged"]
    row("what", "seconds", "columns flagged", "ratio")
    row("---", "---:", "---", "---")
    row("loopml drift, default (Wasserstein/JS)", f"{t_auto:.3f}", verdict(flagged_auto), "")
    row("loopml drift, KS/chi² p < 0.01", f"{t_p:.3f}", verdict(flagged_p), "")
    row(
        "scipy KS/chi² on raw data, p < 0.01",
        f"{t_scipy:.3f}",
        verdict(flagged_scipy),
        f"loopml {t_scipy / t_p:.1f}x faster",
    )
    row(
        "Evidently DataDriftPreset",
        f"{ev_seconds:.3f}",
        verdict(ev_flagged),
        f"loopml {ev_seconds / t_auto:.0f}x faster",
    )
    print(f"\nknown drifted columns: {expected}")


if __name__ == "__main__":
    main()
