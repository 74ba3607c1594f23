"""The loopml half of the tracking benchmark, run as a child process by ``run.py``.

python loopml_side.py SPEC.json RESULT.json
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import workload
from sqlalchemy import text
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

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


def say(message: str) -> None:
    workload.say("loopml", message)


def verify_history(tr: Tracker, run_id: str, values: list[float]) -> float:
    """Read the series back; every step and value must be there. Returns the read time."""
    t0 = time.perf_counter()
    hist = tr.metric_history(run_id, METRIC_KEY)
    elapsed = time.perf_counter() - t0
    n = len(values)
    check(len(hist) == n, f"loopml stored {len(hist)} points of {METRIC_KEY!r}, expected {n}")
    check(hist.total_points == n, f"loopml reports {hist.total_points} points, expected {n}")
    check(
        bool(np.array_equal(hist.steps, np.arange(n, dtype=np.int64))),
        "loopml read back steps that differ from 0..n-1",
    )
    check(
        bool(np.array_equal(hist.values, np.asarray(values, dtype=np.float64))),
        "loopml read back values that differ from the logged ones",
    )
    return elapsed


def per_call(tr: Tracker, values: list[float]) -> dict[str, Any]:
    """1a: mean time per log_metric call as the caller sees it."""
    run = tr.start_run(LOG_EXPERIMENT, name="per-call")
    for i in range(WARMUP_CALLS):
        run.log_metric(WARMUP_KEY, 0.5, step=i)
    tr.writer.flush()
    t0 = time.perf_counter()
    for i, v in enumerate(values):
        run.log_metric(METRIC_KEY, v, step=i)
    elapsed = time.perf_counter() - t0
    run.end()
    verify_history(tr, run.id, values)
    return {"calls": len(values), "seconds": elapsed, "per_call_s": elapsed / len(values)}


def durable(tr: Tracker, values: list[float]) -> dict[str, Any]:
    """1b: all points logged and in the database, final flush included."""
    run = tr.start_run(LOG_EXPERIMENT, name="durable")
    t0 = time.perf_counter()
    for i, v in enumerate(values):
        run.log_metric(METRIC_KEY, v, step=i)
    t_logged = time.perf_counter()
    tr.writer.flush()
    t_done = time.perf_counter()
    check(tr.writer.pending == 0, f"{tr.writer.pending} points still queued after flush")
    read_s = verify_history(tr, run.id, values)
    run.end()
    return {
        "points": len(values),
        "seconds": t_done - t0,
        "logging_s": t_logged - t0,
        "final_flush_s": t_done - t_logged,
        "readback_s": read_s,
    }


def search(tr: Tracker, spec: Spec) -> dict[str, Any]:
    """2: create the runs (setup, timed apart), then time search_runs with the filter."""
    t0 = time.perf_counter()
    for k, r in enumerate(spec.runs, 1):
        run = tr.start_run(
            SEARCH_EXPERIMENT, name=r.name, params=r.params, capture_environment=False
        )
        for key, value in r.metrics.items():
            run.log_metric(key, value, step=0)
        run.end()
        if k % 2000 == 0:
            say(f"created {k:,}/{len(spec.runs):,} runs ({time.perf_counter() - t0:.0f} s)")
    setup_s = time.perf_counter() - t0
    expected = expected_matches(spec.runs)

    def once() -> tuple[float, set[str]]:
        s0 = time.perf_counter()
        found = tr.search_runs(
            experiment=SEARCH_EXPERIMENT, filter=SEARCH_FILTER, limit=SEARCH_LIMIT
        )
        return time.perf_counter() - s0, {r.name for r in found}

    def once_pandas() -> tuple[float, set[str]]:
        s0 = time.perf_counter()
        df = tr.search_runs(
            experiment=SEARCH_EXPERIMENT, filter=SEARCH_FILTER, limit=SEARCH_LIMIT
        ).to_pandas()
        return time.perf_counter() - s0, set(df["name"]) if len(df) else set()

    once()  # warm-up: parser, caches, SQLite pages
    times: list[float] = []
    for _ in range(spec.search_repeats):
        seconds, names = once()
        check(
            names == expected, f"loopml search returned {len(names)} runs, expected {len(expected)}"
        )
        times.append(seconds)
    pandas_times: list[float] = []
    for _ in range(spec.search_repeats):
        seconds, names = once_pandas()
        check(names == expected, "loopml search (to_pandas) returned other runs than expected")
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
    home = Path(spec.workdir, "loopml")
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(home)
    ws = Workspace(f"sqlite:///{home}/loopml.db", f"{home}/artifacts")
    tr = Tracker(ws)
    with ws.engine.connect() as conn:
        pragmas = {
            p: str(conn.execute(text(f"PRAGMA {p}")).scalar())
            for p in ("journal_mode", "synchronous")
        }
        sqlite_version = str(conn.execute(text("select sqlite_version()")).scalar())
    values = [point_value(i) for i in range(spec.points)]
    say(f"1a: {spec.points:,} log_metric calls")
    r1a = per_call(tr, values)
    say(f"1b: {spec.points:,} points until stored")
    r1b = durable(tr, values)
    say(f"2: {len(spec.runs):,} runs, then search_runs x{spec.search_repeats}")
    r2 = search(tr, spec)
    tr.close()
    write_result(
        out,
        {
            "tool": "loopml",
            "version": importlib.metadata.version("loopml"),
            "python": sys.version.split()[0],
            "sqlite": sqlite_version,
            "pragmas": pragmas,
            "per_call": r1a,
            "durable": r1b,
            "search": r2,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
