"""The rows per second loopml's server answers on this machine: the best rate the real
server reaches over request sizes (100 and 1,000 rows by default), measured the way
bench/serving/run.py measures it (the demo's delay model, ``loopml serve`` with 2 workers
and its default fast prediction log, 16 connections, wrk when installed, else the aiohttp
client, every answer checked before and after the timed load). The model is registered
with its training dataset, as a monitored model is, so the server's log writer also
summarises what it writes against the training schema (a cost serving pays here).

Run alone: python bench/monitoring/serving_rate.py [seconds] [sizes, e.g. 100,1000]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
import run as serving  # bench/serving/run.py

SIZES = (100, 1_000)


@dataclass(frozen=True)
class Rate:
    rows: int  # rows per request
    rows_per_second: float
    errors: int  # failed or wrong answers
    cpu_ms_per_request: float


Scenarios = dict[int, tuple[list[bytes], list[list[int]]]]


def prepare(
    sizes: tuple[int, ...] = SIZES,
) -> tuple[Callable[[float], list[Rate]], Callable[[], None]]:
    """Train and register the model and build the payloads (untimed); returns (run the
    server under load for ``seconds`` per size, clean up)."""
    from loopml.data.catalog import Catalog
    from loopml.demo.flights import FEATURES, TARGET, flights_with_weather
    from loopml.demo.training import to_pandas_features, train_delay_model
    from loopml.registry.model_registry import Registry
    from loopml.registry.promotion import promote
    from loopml.store.workspace import Workspace

    flights = flights_with_weather()
    train = flights.filter(pl.col("month").is_in([1, 2]))
    replay = flights.filter(pl.col("month") == 3).select(FEATURES)
    model = train_delay_model(train).model
    tmp = tempfile.TemporaryDirectory(prefix="bench-monitor-serving-")
    ws = Workspace(f"sqlite:///{tmp.name}/loopml.db", f"{tmp.name}/artifacts")
    ds = Catalog(ws).add("delay-train", train.select([*FEATURES, TARGET]))
    Registry(ws).register(
        "delay-model", model, to_pandas_features(train), dataset_artifact_ids=[ds.artifact_id]
    )
    promote(ws, "delay-model", 1, "champion")
    # One predict call for all payloads: per-chunk calls crawl on a loaded machine
    # (HistGradientBoosting's OpenMP threads), and the answers are the same.
    expected = model.predict(to_pandas_features(replay)).astype(int).tolist()
    scenarios: Scenarios = {}
    for rows in sizes:
        bodies, answers = [], []
        for i in range(min(200, replay.height // rows)):
            chunk = replay.slice(i * rows, rows)
            payload = {"dataframe_split": {"columns": chunk.columns, "data": chunk.rows()}}
            bodies.append(json.dumps(payload).encode())
            answers.append(expected[i * rows : (i + 1) * rows])
        scenarios[rows] = (bodies, answers)
    env = {**os.environ, "LOOPML_DB": ws.db_url, "LOOPML_ARTIFACTS": ws.artifacts_url}

    def run(seconds: float) -> list[Rate]:
        port = serving.free_port()
        cmd = [sys.executable, "-m", "loopml.cli", "serve", "delay-model@champion"]
        cmd += ["--port", str(port), "--workers", "2"]
        use_wrk = serving.shutil.which("wrk") is not None
        results = serving.run_server(
            "loopml", cmd, env, port, "/v2/health/ready", scenarios, seconds, 16, use_wrk
        )
        return [Rate(r.rows, r.rps * r.rows, r.errors, r.cpu_ms) for r in results]

    def close() -> None:
        ws.close()
        tmp.cleanup()

    return run, close


def best(rates: list[Rate]) -> Rate:
    """The request size at which the server answers the most rows per second."""
    return max(rates, key=lambda r: r.rows_per_second)


def serving_rates(seconds: float = 20.0, sizes: tuple[int, ...] = SIZES) -> list[Rate]:
    run, close = prepare(sizes)
    try:
        return run(seconds)
    finally:
        close()


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    sizes = tuple(int(s) for s in sys.argv[2].split(",")) if len(sys.argv) > 2 else SIZES
    rates = serving_rates(secs, sizes)
    for r in rates:
        print(f"loopml serve, {r.rows}-row requests: {r.rows_per_second:,.0f} rows/s "
              f"({r.errors} errors, server CPU {r.cpu_ms_per_request:.2f} ms/request)")  # fmt: skip
    top = best(rates)
    print(f"best: {top.rows_per_second:,.0f} rows/s in {top.rows}-row requests")
