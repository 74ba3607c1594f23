"""The rows per second loopml's server answers in 100-row requests, measured the way
bench/serving/run.py measures it (the same model, payloads, 2 workers, 16 connections,
wrk when installed, else the aiohttp client), so the monitor's ingest rate can be put
next to it on the same machine at the same time.

Run alone: python bench/monitoring/serving_rate.py [seconds]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
import run as serving  # bench/serving/run.py


def serving_rows_per_second(seconds: float = 20.0, rows: int = 100) -> tuple[float, int]:
    """(rows/s, failed or wrong answers) of ``loopml serve`` under the serving bench's load."""
    from loopml.demo.flights import FEATURES, flights_with_weather
    from loopml.demo.training import to_pandas_features, train_delay_model
    from loopml.registry.model_registry import Registry
    from loopml.registry.promotion import promote
    from loopml.store.workspace import Workspace

    flights = flights_with_weather()
    train = flights.filter(pl.col("month").is_in([1, 2]))
    replay = flights.filter(pl.col("month") == 3).select(FEATURES)
    model = train_delay_model(train).model
    with tempfile.TemporaryDirectory(prefix="bench-monitor-serving-") as tmp:
        ws = Workspace(f"sqlite:///{tmp}/loopml.db", f"{tmp}/artifacts")
        Registry(ws).register("delay-model", model, to_pandas_features(train))
        promote(ws, "delay-model", 1, "champion")
        # One predict call for all payloads: per-chunk calls crawl on a loaded machine
        # (HistGradientBoosting's OpenMP threads), and the answers are the same.
        sent = replay.head(200 * rows)
        expected = model.predict(to_pandas_features(sent)).astype(int).tolist()
        bodies, answers = [], []
        for i in range(200):
            chunk = sent.slice(i * rows, rows)
            payload = {"dataframe_split": {"columns": chunk.columns, "data": chunk.rows()}}
            bodies.append(json.dumps(payload).encode())
            answers.append(expected[i * rows : (i + 1) * rows])
        port = serving.free_port()
        env = {**os.environ, "LOOPML_DB": ws.db_url, "LOOPML_ARTIFACTS": ws.artifacts_url}
        cmd = [sys.executable, "-m", "loopml.cli", "serve", "delay-model@champion"]
        cmd += ["--port", str(port), "--workers", "2"]
        use_wrk = serving.shutil.which("wrk") is not None
        (result,) = serving.run_server(
            "loopml", cmd, env, port, "/v2/health/ready", {rows: (bodies, answers)},
            seconds, 16, use_wrk,
        )  # fmt: skip
        ws.close()
    return result.rps * rows, result.errors


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rate, errors = serving_rows_per_second(secs)
    print(f"loopml serve, 100-row requests: {rate:,.0f} rows/s ({errors} errors)")
