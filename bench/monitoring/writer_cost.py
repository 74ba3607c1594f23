"""What the log writer's per-file summaries cost serving: the same server, the same load,
with this tree's code and with a baseline tree's (one without the summaries), in turns.

    git archive <commit-before-summaries> src | tar -x -C /tmp/base
    cp src/loopml/store/metadata/migrations/versions/*.py \
       /tmp/base/src/loopml/store/metadata/migrations/versions/  # the same schema
    python bench/monitoring/writer_cost.py /tmp/base/src [seconds] [rounds]

Two cases, as bench/serving/run.py builds them: ``light`` (a LogisticRegression on 6 float
features, 1-row requests, no training dataset: the writer profiles but has no schema to
validate against) and ``delay`` (the demo's model registered with its training dataset,
100-row requests: the writer profiles and validates). 2 workers, 16 connections, wrk.
Rounds alternate baseline and current so drift in the machine's load hits both.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
import run as serving  # bench/serving/run.py

LIGHT = ["month", "day", "hour", "distance", "temp", "humid"]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup(tmp: str, case: str) -> tuple[dict[str, str], str, int, Any]:
    from loopml.data.catalog import Catalog
    from loopml.demo.flights import FEATURES, TARGET, flights_with_weather
    from loopml.demo.training import to_pandas_features, train_delay_model
    from loopml.registry.model_registry import Registry
    from loopml.registry.promotion import promote
    from loopml.store.workspace import Workspace

    flights = flights_with_weather()
    train = flights.filter(pl.col("month").is_in([1, 2]))
    ws = Workspace(f"sqlite:///{tmp}/loopml.db", f"{tmp}/artifacts")
    if case == "light":
        from sklearn.linear_model import LogisticRegression

        X = train.select(LIGHT).fill_null(0).cast(pl.Float64)
        model = LogisticRegression(max_iter=500).fit(X.to_pandas(), train[TARGET].to_numpy())
        Registry(ws).register("m", model, X.to_pandas())
        replay = flights.filter(pl.col("month") == 3).select(LIGHT).fill_null(0)
        replay, rows = replay.cast(pl.Float64), 1
        expected = model.predict(replay.to_pandas()).astype(int).tolist()
    else:
        model = train_delay_model(train).model
        ds = Catalog(ws).add("train", train.select([*FEATURES, TARGET]))
        reg = Registry(ws)
        reg.register("m", model, to_pandas_features(train), dataset_artifact_ids=[ds.artifact_id])
        replay, rows = flights.filter(pl.col("month") == 3).select(FEATURES), 100
        expected = model.predict(to_pandas_features(replay)).astype(int).tolist()
    promote(ws, "m", 1, "champion")
    bodies, answers = [], []
    for i in range(200):
        chunk = replay.slice(i * rows, rows)
        payload = {"dataframe_split": {"columns": chunk.columns, "data": chunk.rows()}}
        bodies.append(json.dumps(payload).encode())
        answers.append(expected[i * rows : (i + 1) * rows])
    env = {"LOOPML_DB": ws.db_url, "LOOPML_ARTIFACTS": ws.artifacts_url}
    ws.close()
    return env, "m@champion", rows, (bodies, answers)


def main() -> None:
    base = Path(sys.argv[1]).resolve()
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    here = Path(__file__).resolve().parent.parent.parent / "src"
    use_wrk = serving.shutil.which("wrk") is not None
    for case in ("light", "delay"):
        with tempfile.TemporaryDirectory(prefix="bench-writer-cost-") as tmp:
            ws_env, ref, rows, scenario = setup(tmp, case)
            seen: dict[str, list[tuple[float, float]]] = {"baseline": [], "summaries": []}
            for _ in range(rounds):
                for name, src in (("baseline", base), ("summaries", here)):
                    port = serving.free_port()
                    env = {**os.environ, **ws_env, "PYTHONPATH": str(src)}
                    cmd = [sys.executable, "-m", "loopml.cli", "serve", ref, "--port", str(port)]
                    cmd += ["--workers", "2"]
                    (r,) = serving.run_server(
                        name, cmd, env, port, "/v2/health/ready", {rows: scenario},
                        seconds, 16, use_wrk,
                    )  # fmt: skip
                    assert r.errors == 0, f"{r.errors} failed or wrong answers"
                    seen[name].append((r.rps, r.cpu_ms))
            b = max(x for x, _ in seen["baseline"])
            s = max(x for x, _ in seen["summaries"])
            bc = min(c for _, c in seen["baseline"])
            sc = min(c for _, c in seen["summaries"])
            print(f"{case} ({rows}-row requests): baseline {b:,.0f} req/s, with summaries "
                  f"{s:,.0f} req/s ({s / b - 1:+.1%}); server CPU {bc:.3f} -> {sc:.3f} "
                  f"ms/request ({sc / bc - 1:+.1%}); load {loadavg()}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
