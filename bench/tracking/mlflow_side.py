"""The MLflow half of the tracking benchmark, run as a child process by ``run.py``.

Runs under the Python that has MLflow (by default a separate virtual environment, since
installing MLflow would change packages loopml depends on), so it imports only MLflow and
the standard library.

    python mlflow_side.py SPEC.json RESULT.json
"""

from __future__ import annotations

import logging
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow
import workload
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from workload import (
    LOG_EXPERIMENT,
    METRIC_KEY,
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_LIMIT,
    WARMUP_CALLS,
    WARMUP_KEY,
    Spec,
    check,
    expected_matches,
    point_value,
    write_result,
)


def say(message: str) -> None:
    workload.say("mlflow", message)


def verify_history(client: MlflowClient, run_id: str, values: list[float]) -> float:
    """Read the series back; every step and value must be there. Returns the read time."""
    t0 = time.perf_counter()
    hist = client.get_metric_history(run_id, METRIC_KEY)
    elapsed = time.perf_counter() - t0
    n = len(values)
    check(len(hist) == n, f"MLflow stored {len(hist)} points of {METRIC_KEY!r}, expected {n}")
    by_step = sorted((m.step, m.value) for m in hist)
    check([s for s, _ in by_step] == list(range(n)), "MLflow read back steps other than 0..n-1")
    check([v for _, v in by_step] == values, "MLflow read back values other than the logged ones")
    return elapsed


def per_call(client: MlflowClient, experiment_id: str, values: list[float]) -> dict[str, Any]:
    """1a: mean time per mlflow.log_metric call, on a sample of the calls."""
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name="per-call") as active:
        for i in range(WARMUP_CALLS):
            mlflow.log_metric(WARMUP_KEY, 0.5, step=i)
        t0 = time.perf_counter()
        for i, v in enumerate(values):
            mlflow.log_metric(METRIC_KEY, v, step=i)
        elapsed = time.perf_counter() - t0
        run_id = active.info.run_id
    verify_history(client, run_id, values)
    return {"calls": len(values), "seconds": elapsed, "per_call_s": elapsed / len(values)}


def durable(
    client: MlflowClient, experiment_id: str, values: list[float], batch_size: int
) -> dict[str, Any]:
    """1b: MLflow's fastest path, log_batch, every batch for real."""
    run_id = client.create_run(experiment_id, run_name="durable").info.run_id
    n = len(values)
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        ts = int(time.time() * 1000)
        batch = [
            Metric(METRIC_KEY, values[i], ts, i) for i in range(start, min(start + batch_size, n))
        ]
        client.log_batch(run_id, metrics=batch)
    elapsed = time.perf_counter() - t0
    read_s = verify_history(client, run_id, values)
    client.set_terminated(run_id)
    return {
        "points": n,
        "batch_size": batch_size,
        "batches": -(-n // batch_size),
        "seconds": elapsed,
        "readback_s": read_s,
    }


def search(client: MlflowClient, experiment_id: str, spec: Spec) -> dict[str, Any]:
    """2: create the runs (setup, timed apart), then time mlflow.search_runs with the filter."""
    t0 = time.perf_counter()
    for k, r in enumerate(spec.runs, 1):
        run_id = client.create_run(experiment_id, run_name=r.name).info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, ts, 0) for key, value in r.metrics.items()],
            params=[Param(key, value) for key, value in r.params.items()],
        )
        client.set_terminated(run_id)
        if k % 500 == 0:
            elapsed = time.perf_counter() - t0
            eta = elapsed / k * (len(spec.runs) - k)
            say(f"created {k:,}/{len(spec.runs):,} runs ({elapsed:.0f} s, about {eta:.0f} s left)")
    setup_s = time.perf_counter() - t0
    expected = expected_matches(spec.runs)

    def once(output_format: str) -> tuple[float, set[str]]:
        s0 = time.perf_counter()
        found: Any = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=SEARCH_FILTER,
            max_results=SEARCH_LIMIT,
            output_format=output_format,
        )
        seconds = time.perf_counter() - s0
        if output_format == "list":
            return seconds, {r.info.run_name for r in found}
        return seconds, set(found["tags.mlflow.runName"]) if len(found) else set()

    once("list")  # warm-up, as on the loopml side
    times: list[float] = []
    for _ in range(spec.search_repeats):
        seconds, names = once("list")
        check(
            names == expected, f"MLflow search returned {len(names)} runs, expected {len(expected)}"
        )
        times.append(seconds)
    pandas_times: list[float] = []
    for _ in range(spec.search_repeats):
        seconds, names = once("pandas")
        check(names == expected, "MLflow search (pandas) returned other runs than expected")
        pandas_times.append(seconds)
    return {
        "runs": len(spec.runs),
        "setup_s": setup_s,
        "matches": len(expected),
        "times_s": times,
        "median_s": statistics.median(times),
        "pandas_times_s": pandas_times,
        "pandas_median_s": statistics.median(pandas_times),
    }


def main(argv: list[str]) -> int:
    spec = Spec.load(Path(argv[1]))
    out = Path(argv[2])
    home = Path(spec.workdir, "mlflow")
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(home)  # MLflow may create ./mlruns for its default experiment
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    db = home / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    client = MlflowClient()
    artifacts = (home / "artifacts").as_uri()
    log_exp = client.create_experiment(LOG_EXPERIMENT, artifact_location=f"{artifacts}/log")
    search_exp = client.create_experiment(
        SEARCH_EXPERIMENT, artifact_location=f"{artifacts}/search"
    )
    with sqlite3.connect(db) as conn:
        journal_mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    values = [point_value(i) for i in range(spec.points)]
    sample = values[: spec.mlflow_sample]
    say(f"1a: {len(sample):,} mlflow.log_metric calls (a sample; extrapolated)")
    r1a = per_call(client, log_exp, sample)
    say(f"1b: {spec.points:,} points with log_batch, batches of {spec.batch_size:,}")
    r1b = durable(client, log_exp, values, spec.batch_size)
    say(f"2: {len(spec.runs):,} runs (slow), then search_runs x{spec.search_repeats}")
    r2 = search(client, search_exp, spec)
    write_result(
        out,
        {
            "tool": "mlflow",
            "version": mlflow.__version__,
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            # MLflow sets no journal/synchronous pragma: SQLite's defaults apply per connection.
            "pragmas": {"journal_mode": journal_mode, "synchronous": "2 (FULL, SQLite default)"},
            "per_call": r1a,
            "durable": r1b,
            "search": r2,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
