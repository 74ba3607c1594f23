"""The remote client's ``log_metric`` vs MLflow's client, each against its own server.

    python bench/server/remote_log.py           # 100,000 loopml points, 2,000 MLflow calls
    python bench/server/remote_log.py --points 20000 --mlflow-calls 300 --no-doc

loopml: ``loopml server`` (a child process on loopback, SQLite) and this process with
``LOOPML_URI`` set: ``lm.start_run`` then ``run.log_metric`` in a loop. Two figures: the
mean cost of one call as the caller sees it (the point is queued; a background thread
sends batches), and the cost per point until the last one is on the server (the loop plus
``run.end()``, which sends what is queued and ends the run).

MLflow: ``mlflow server`` (a child process on loopback, SQLite, one worker) and a child
process with MLflow's client (``/tmp/mlflow-venv``, see bench/tracking/README.md) calling
``mlflow.log_metric`` in a loop; each call is one HTTP request, answered once written.

Both series are read back through each server (count, steps and values) before a figure
is printed. The ratio compares per-call cost; the target (issue 15) is 100x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import DEFAULT_MLFLOW, free_port, say, stop, wait_ready  # noqa: E402

REPO = HERE.parent.parent
TARGET = 100.0

MLFLOW_CLIENT = r"""
import json, sys, time
import mlflow
from mlflow.tracking import MlflowClient

url, calls = sys.argv[1], int(sys.argv[2])
mlflow.set_tracking_uri(url)
with mlflow.start_run() as run:
    mlflow.log_metric("warm", 0.0, step=0)  # connection and first-call setup
    t0 = time.perf_counter()
    for i in range(calls):
        mlflow.log_metric("loss", 1.0 / (1 + i), step=i)
    elapsed = time.perf_counter() - t0
history = MlflowClient(url).get_metric_history(run.info.run_id, "loss")
ok = sorted((m.step, m.value) for m in history) == [(i, 1.0 / (1 + i)) for i in range(calls)]
print(json.dumps({"elapsed_s": elapsed, "calls": calls, "read_back": ok}))
"""


def loopml_side(url: str, points: int) -> tuple[float, float]:
    """(mean seconds per call, seconds per point until all are on the server)."""
    os.environ["LOOPML_URI"] = url
    import numpy as np

    import loopml as lm

    with lm.start_run("bench-remote-log") as warm:
        warm.log_metric("warm", 0.0)
    run = lm.start_run("bench-remote-log", name="log-metric")
    t0 = time.perf_counter()
    for i in range(points):
        run.log_metric("loss", 1.0 / (1 + i), step=i)
    calls = time.perf_counter() - t0
    run.end()
    delivered = time.perf_counter() - t0
    history = lm.metric_history(run.id, "loss")
    expected = 1.0 / (1 + np.arange(points))
    if history.steps.tolist() != list(range(points)) or not np.array_equal(
        history.values, expected
    ):
        sys.exit("loopml: the series read back differs from what was logged")
    return calls / points, delivered / points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--mlflow-calls", type=int, default=2000)
    ap.add_argument("--mlflow-python", default=str(DEFAULT_MLFLOW))
    ap.add_argument("--no-doc", action="store_true", help="print only; do not write docs")
    args = ap.parse_args()
    if not Path(args.mlflow_python).exists():
        sys.exit(
            f"no MLflow Python at {args.mlflow_python}: python -m venv /tmp/mlflow-venv && "
            "/tmp/mlflow-venv/bin/python -m pip install mlflow"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-remote-log-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS", "LOOPML_URI", "LOOPML_TOKEN")
    }
    env["LOOPML_HOME"] = str(work / "loopml")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"loopml server; {args.points:,} log_metric calls through the remote client")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "server", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"{url}/api/v1/openapi.json", proc, deadline_s=300)
        per_call, per_point = loopml_side(url, args.points)
    finally:
        stop(proc)

    port = free_port()
    murl = f"http://127.0.0.1:{port}"
    say(f"mlflow server; {args.mlflow_calls:,} mlflow.log_metric calls")
    mlflow_bin = Path(args.mlflow_python).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root",
            str(work / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # MLflow's server imports and migrates for a long while on a busy machine.
        wait_ready(f"{murl}/health", proc, deadline_s=900)
        out = subprocess.run(
            [args.mlflow_python, "-c", MLFLOW_CLIENT, murl, str(args.mlflow_calls)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        stop(proc)
    mlflow = json.loads(out.stdout.strip().splitlines()[-1])
    if not mlflow["read_back"]:
        sys.exit("MLflow: the series read back differs from what was logged")
    mlflow_call = mlflow["elapsed_s"] / mlflow["calls"]

    ratio = mlflow_call / per_call
    delivered_ratio = mlflow_call / per_point
    table = "\n".join(
        [
            "| | loopml (remote client) | MLflow client | ratio | target |",
            "|---|---|---|---|---|",
            f"| `log_metric`, mean per call ({args.points:,} loopml calls, "
            f"{args.mlflow_calls:,} MLflow calls) | {per_call * 1e6:.2f} µs | "
            f"{mlflow_call * 1e6:,.0f} µs | {ratio:,.0f}x | >= {TARGET:.0f}x |",
            f"| per point until on the server (loopml: calls + `end()`; MLflow: the same "
            f"calls) | {per_point * 1e6:.2f} µs | {mlflow_call * 1e6:,.0f} µs | "
            f"{delivered_ratio:,.0f}x | |",
        ]
    )
    print(table)
    if not args.no_doc:
        doc = REPO / "docs" / "benchmarks-remote-log.md"
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        doc.write_text(
            f"# Remote `log_metric`: loopml's client vs MLflow's, each against its own server"
            f"\n\n{stamp}; {platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{load:.1f}, Python {platform.python_version()}; re-run with `python "
            f"bench/server/remote_log.py --points {args.points} --mlflow-calls "
            f"{args.mlflow_calls}`.\n\n{table}\n"
        )
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
