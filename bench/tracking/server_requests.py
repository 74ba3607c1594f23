"""What one MLflow REST request costs each server: the same bare HTTP requests (no MLflow
client) against `loopml server` and `mlflow server`, one at a time.

    python bench/tracking/server_requests.py                 # 2,000 requests of each kind
    python bench/tracking/server_requests.py --requests 300  # smoke run

For each kind (``runs/log-metric``, ``experiments/get-by-name``, ``runs/get``) it prints
the wall time per request seen by a keep-alive ``httpx`` client and the server's own CPU
time per request (user + system of the server and its workers, read from the OS). The CPU
figure moves far less than wall time when the machine is shared. Both servers use SQLite
in a temporary directory and one worker; each is timed once it idles after starting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from client_vs_server import (  # noqa: E402
    MLFLOW_ENV,
    free_port,
    mlflow_server_cmd,
    server_cpu,
    settle,
    start,
    stop,
)
from run import DEFAULT_VENV, find_mlflow_python  # noqa: E402

P = "/api/2.0/mlflow"
KINDS = ("log-metric", "get-by-name", "runs-get")


def one(c: httpx.Client, kind: str, run_id: str, i: int) -> httpx.Response:
    if kind == "log-metric":
        body = {"run_id": run_id, "key": "loss", "value": i / 7, "step": i, "timestamp": 1_700_000}
        return c.post(f"{P}/runs/log-metric", json=body)
    if kind == "get-by-name":
        return c.get(f"{P}/experiments/get-by-name", params={"experiment_name": "bench"})
    return c.get(f"{P}/runs/get", params={"run_id": run_id})


def measure(url: str, proc: Any, n: int) -> dict[str, tuple[float, float]]:
    settle(proc)
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(base_url=url, timeout=60) as c:
        made = c.post(f"{P}/experiments/create", json={"name": "bench"})
        made.raise_for_status()
        exp_id = made.json()["experiment_id"]
        run = c.post(f"{P}/runs/create", json={"experiment_id": exp_id})
        run.raise_for_status()
        run_id = run.json()["run"]["info"]["run_id"]
        for kind in KINDS:
            for i in range(50):  # warm-up
                one(c, kind, run_id, i).raise_for_status()
            cpu, t0 = server_cpu(proc), time.perf_counter()
            for i in range(n):
                r = one(c, kind, run_id, 1000 + i)
                if r.status_code != 200:
                    sys.exit(f"{url} answered {kind} with {r.status_code}: {r.text[:300]}")
            wall = (time.perf_counter() - t0) / n
            out[kind] = (wall, (server_cpu(proc) - cpu) / n)
        history = c.get(f"{P}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"})
        steps = {m["step"] for m in history.json()["metrics"]}
        if steps != set(range(50)) | set(range(1000, 1000 + n)):
            sys.exit(f"{url}: the logged points did not read back")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="timed requests of each kind")
    ap.add_argument("--mlflow-python", help="a Python that can import mlflow (with its server)")
    args = ap.parse_args(argv)
    venv = DEFAULT_VENV / "bin" / "python"
    requested = args.mlflow_python or (str(venv) if venv.exists() else None)
    ml_python = find_mlflow_python(requested, install=True)
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-requests-"))
    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(work / "loopml")
    loads = [os.getloadavg()]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "loopml.cli", "server", "--port", str(port), "--workers", "1"]
    proc = start(cmd, env, f"{url}/api/v1/openapi.json", work)
    try:
        lm = measure(url, proc, args.requests)
    finally:
        stop(proc)
    loads.append(os.getloadavg())

    port = free_port()
    murl = f"http://127.0.0.1:{port}"
    (work / "mlflow").mkdir()
    cmd = mlflow_server_cmd(ml_python, work / "mlflow" / "mlflow.db", str(port))
    proc = start(cmd, MLFLOW_ENV, f"{murl}/health", work)
    try:
        ml = measure(murl, proc, args.requests)
    finally:
        stop(proc)
    loads.append(os.getloadavg())

    print(f"| {args.requests:,} requests of each kind, bare HTTP | loopml | MLflow | ratio |")
    print("|---|---:|---:|---:|")
    for kind in KINDS:
        for slot, what in ((0, "wall"), (1, "server CPU")):
            a, b = lm[kind][slot] * 1000, ml[kind][slot] * 1000
            print(f"| `{kind}`, {what} per request | {a:.3f} ms | {b:.3f} ms | {b / a:.1f}x |")
    print("load average (1 min) before, between, after: " + ", ".join(f"{x[0]:.1f}" for x in loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
