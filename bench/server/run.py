"""The team server vs ``mlflow server`` on the same runs, in one command.

    python bench/server/run.py                        # 10,000 runs (MLflow's setup takes minutes)
    python bench/server/run.py --runs 1000 --no-doc   # a quick smoke run

1. Search: a page of 100 runs with a metric filter through each server's HTTP API
   (loopml ``GET /api/v1/runs``, MLflow ``POST /api/2.0/mlflow/runs/search``), median of
   ``--repeats`` after a warm-up; both answers are checked (100 runs, each matching).
2. The runs page's first render in headless Chromium (Debian's), and a run's page whose
   metric has 100,000 points, until its chart is drawn.

Both servers run as child processes on loopback, one at a time, on SQLite stores in a
temporary directory, filled with the same runs (bench/tracking/workload.py). MLflow runs
from its own virtual environment (bench/tracking/README.md says why and where).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tracking"))

from workload import SEARCH_EXPERIMENT, Spec, make_runs  # noqa: E402

REPO = HERE.parent.parent
DEFAULT_MLFLOW = Path("/tmp/mlflow-venv/bin/python")
FILTER = "metrics.auc > 0.7"
PAGE = 100
HISTORY_POINTS = 100_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def say(message: str) -> None:
    print(f"[bench/server] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    sys.exit(f"no answer from {url} within {deadline_s} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def median_time(call: Any, repeats: int) -> float:
    call()  # warm-up: connection, caches, imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fill_loopml(home: Path, spec: Spec) -> tuple[float, str]:
    from loopml.store.workspace import Workspace
    from loopml.tracking.tracker import Tracker

    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    tr = Tracker(ws)
    t0 = time.perf_counter()
    for r in spec.runs:
        run = tr.start_run(
            SEARCH_EXPERIMENT, name=r.name, params=r.params, capture_environment=False
        )
        run.log_metrics(r.metrics, step=0)
        run.end()
    setup = time.perf_counter() - t0
    with tr.start_run("bench-history", name="long-history", capture_environment=False) as run:
        for i in range(HISTORY_POINTS):
            run.log_metric("loss", 1.0 / (1 + i), step=i)
    history_run = run.id
    tr.close()
    ws.close()
    return setup, history_run


def check_page(names: list[str], aucs: list[float], what: str) -> None:
    if len(names) != PAGE or not all(a > 0.7 for a in aucs):
        sys.exit(f"{what} returned {len(names)} runs or runs that do not match {FILTER!r}")


def loopml_search(url: str) -> None:
    r = httpx.get(
        f"{url}/api/v1/runs",
        params={"experiment": SEARCH_EXPERIMENT, "filter": FILTER, "limit": PAGE},
        timeout=60,
    )
    runs = r.json()["runs"]
    check_page([x["name"] for x in runs], [x["metrics"]["auc"] for x in runs], "loopml")


def mlflow_search(url: str, experiment_id: str) -> None:
    r = httpx.post(
        f"{url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "filter": FILTER, "max_results": PAGE},
        timeout=60,
    )
    runs = r.json()["runs"]
    aucs = [next(m["value"] for m in x["data"]["metrics"] if m["key"] == "auc") for x in runs]
    check_page([x["info"]["run_name"] for x in runs], aucs, "MLflow")


def render_times(url: str, history_run: str, repeats: int) -> dict[str, float]:
    """First render of the runs page and of a run page with a 100,000-point metric."""
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for name, path, ready in (
            ("runs_page", f"/runs?experiment={SEARCH_EXPERIMENT}", "#runs-table tbody tr"),
            ("run_page_100k", f"/runs/{history_run}", ".chart .main-svg"),
        ):
            times = []
            for _ in range(repeats + 1):  # the first visit fills the browser's cache
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(url + path, wait_until="load")
                page.locator(ready).first.wait_for(timeout=60_000)
                times.append(time.perf_counter() - t0)
                page.close()
            out[name] = statistics.median(times[1:])
        browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--mlflow-python", default=str(DEFAULT_MLFLOW))
    ap.add_argument("--no-doc", action="store_true", help="print only; do not append to docs")
    args = ap.parse_args()
    if not Path(args.mlflow_python).exists():
        sys.exit(
            f"no MLflow Python at {args.mlflow_python}: python -m venv /tmp/mlflow-venv && "
            "/tmp/mlflow-venv/bin/python -m pip install mlflow"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    spec = Spec(str(work), 0, 0, 0, 0, runs=make_runs(args.runs))
    spec_path = work / "spec.json"
    spec.dump(spec_path)
    home = work / "loopml"
    say(f"loopml: {args.runs:,} runs + one run with a {HISTORY_POINTS:,}-point metric")
    loopml_setup, history_run = fill_loopml(home, spec)
    say(f"MLflow: the same {args.runs:,} runs (slow)")
    mlflow_db = work / "mlflow" / "mlflow.db"
    mlflow_db.parent.mkdir()
    made = subprocess.run(
        [args.mlflow_python, str(HERE / "mlflow_side.py"), str(spec_path), str(mlflow_db)],
        check=True,
        capture_output=True,
        text=True,
    )
    mlflow_info = json.loads(made.stdout.strip().splitlines()[-1])

    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "ui", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"{url}/api/v1/openapi.json", proc)
        loopml_s = median_time(lambda: loopml_search(url), args.repeats)
        renders = render_times(url, history_run, max(3, args.repeats // 4))
    finally:
        stop(proc)

    mlflow_bin = Path(args.mlflow_python).parent / "mlflow"
    port = free_port()
    murl = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{mlflow_db}",
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
        wait_ready(f"{murl}/health", proc)
        mlflow_s = median_time(
            lambda: mlflow_search(murl, mlflow_info["experiment_id"]), args.repeats
        )
    finally:
        stop(proc)

    ratio = mlflow_s / loopml_s
    lines = [
        f"| search a page of {PAGE} runs, `{FILTER}`, over {args.runs:,} runs (HTTP, median of "
        f"{args.repeats}) | {loopml_s * 1000:.1f} ms | {mlflow_s * 1000:.1f} ms | "
        f"{ratio:.1f}x | >= 10x |",
        f"| runs page, first render in Chromium (median) | {renders['runs_page'] * 1000:.0f} ms "
        f"| | | < 1 s |",
        f"| run page, {HISTORY_POINTS:,}-point metric, chart drawn (median) | "
        f"{renders['run_page_100k'] * 1000:.0f} ms | | | < 1 s |",
    ]
    table = "\n".join(["| | loopml | MLflow | ratio | target |", "|---|---|---|---|---|", *lines])
    print(table)
    say(
        f"setup (not timed above): loopml {loopml_setup:.0f} s, MLflow "
        f"{mlflow_info['setup_s']:.0f} s for {args.runs:,} runs"
    )
    if not args.no_doc:
        doc = REPO / "docs" / "benchmarks-server.md"
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        doc.write_text(
            f"# Team server vs `mlflow server`\n\n{stamp}; {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}; re-run with "
            f"`python bench/server/run.py --runs {args.runs}`.\n\n{table}\n"
        )
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
