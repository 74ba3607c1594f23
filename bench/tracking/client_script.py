"""The MLflow client script both servers are timed with: the same code, the same client.

    MLFLOW_TRACKING_URI=http://127.0.0.1:PORT python client_script.py SPEC.json RESULT.json REPEATS
    ... client_script.py SPEC.json RESULT.json REPEATS floor   # against null_server.py
    ... client_script.py blocks [floor]   # log_metric calls in blocks on cue (see blocks())

Runs under a Python that has MLflow. Times, through MLflow's own client only:
  1. 1,000 ``mlflow.log_metric`` calls inside ``mlflow.start_run``;
  2. one ``MlflowClient.log_batch`` of 10,000 metric points (the client sends it in
     requests of 1,000, MLflow's per-request limit);
  3. ``mlflow.search_runs`` with a filter over the 10,000 runs already in the search
     experiment (put there beforehand through each side's own store, untimed),
     as a list of runs and as MLflow's default pandas DataFrame (median of the repeats).
Every write is read back and every search answer checked against the workload; with
``floor``, against ``null_server.py`` (which stores nothing), nothing is read back, so the
same calls time MLflow's client by itself.

Run as a script, its folder (with ``workload.py``) is first on the path. It is not put there
a second time: each of the client's failed imports (it probes for Databricks modules on
every request) would then look in it twice.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
from workload import (
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_LIMIT,
    Spec,
    check,
    expected_matches,
    point_value,
    write_result,
)

LOG_CALLS = 1_000
BATCH_POINTS = 10_000


def blocks() -> int:
    """The 1,000 ``mlflow.log_metric`` calls in blocks, on cue: each line ``go N`` on stdin
    makes the next N calls and answers the seconds they took; ``end`` ends the run (read
    back unless the server is the floor). ``client_vs_server.py`` runs one such process per
    server and cues them in turn, so all three are timed at the same moments."""
    floor = sys.argv[2:] == ["floor"]
    mlflow.set_experiment("bench-blocks")
    with mlflow.start_run() as run:
        step = 0
        for line in sys.stdin:
            if line.strip() == "end":
                break
            n = int(line.split()[1])
            t0 = time.perf_counter()
            for i in range(step, step + n):
                mlflow.log_metric("loss", point_value(i), step=i)
            print(time.perf_counter() - t0, flush=True)
            step += n
    if not floor:
        hist = sorted(
            (m.step, m.value) for m in MlflowClient().get_metric_history(run.info.run_id, "loss")
        )
        check(hist == [(i, point_value(i)) for i in range(step)], "loss: history read back differs")
    return 0


def main(argv: list[str]) -> int:
    if argv[1] == "blocks":
        return blocks()
    floor = argv[4:] == ["floor"]
    spec = Spec.load(Path(argv[1]))
    out, repeats = Path(argv[2]), int(argv[3])
    client = MlflowClient()
    found = client.get_experiment_by_name(SEARCH_EXPERIMENT)
    check(found is not None, f"the server has no experiment {SEARCH_EXPERIMENT!r}")
    experiment_id = found.experiment_id
    mlflow.set_experiment("bench-client")
    values = [point_value(i) for i in range(BATCH_POINTS)]

    with mlflow.start_run(run_name="client-script") as run:
        t0 = time.perf_counter()
        for i in range(LOG_CALLS):
            mlflow.log_metric("loss", values[i], step=i)
        log_metric_s = time.perf_counter() - t0
        stamp = int(time.time() * 1000)
        batch = [Metric("batch", values[i], stamp, i) for i in range(BATCH_POINTS)]
        t0 = time.perf_counter()
        client.log_batch(run.info.run_id, metrics=batch)
        log_batch_s = time.perf_counter() - t0
        run_id = run.info.run_id

    for key, n in () if floor else (("loss", LOG_CALLS), ("batch", BATCH_POINTS)):
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        check(hist == [(i, values[i]) for i in range(n)], f"{key}: history read back differs")

    expected = expected_matches(spec.runs)

    expected_ids: set[str] = set()

    def search(output_format: str) -> float:
        t0 = time.perf_counter()
        found = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=SEARCH_FILTER,
            max_results=SEARCH_LIMIT,
            output_format=output_format,
        )
        seconds = time.perf_counter() - t0
        if output_format == "list":
            names = {r.info.run_name for r in found}
            check(names == expected, f"search returned {len(names)} runs, expected {len(expected)}")
            expected_ids.update(r.info.run_id for r in found)
        else:
            # The same runs as the list (checked by name above), as a DataFrame.
            check(set(found["run_id"]) == expected_ids, "search (pandas) returned other runs")
        return seconds

    search("list")  # warm-up
    list_s = [search("list") for _ in range(repeats)]
    pandas_s = [search("pandas") for _ in range(repeats)]
    write_result(
        out,
        {
            "mlflow": mlflow.__version__,
            "log_metric_s": log_metric_s,
            "log_batch_s": log_batch_s,
            "search_list_s": statistics.median(list_s),
            "search_pandas_s": statistics.median(pandas_s),
            "matches": len(expected),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
