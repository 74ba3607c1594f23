"""The team server vs ``mlflow server`` on the same runs, in one command.

    python bench/server/run.py --doc      # 10,000 runs; writes docs/benchmarks-server.md
    python bench/server/run.py --runs 1000 --repeats 4   # a quick smoke run

1. Search: a page of 100 runs with a metric filter through each server's HTTP API
   (loopml ``GET /api/v1/runs``, MLflow ``POST /api/2.0/mlflow/runs/search``), one
   keep-alive httpx client per server, median of ``--repeats`` after a warm-up, each
   server timed 20 s after it first answered; both answers are checked (100 runs, each
   matching).
2. In headless Chromium (Debian's): the runs page until its table is drawn, and a run's
   page whose metric has 100,000 points until its chart is drawn (the server draws it
   into the HTML) and until Plotly has replaced it with the interactive chart.

Every figure is printed with the host's load average while it was measured (the machine
is shared; a figure taken at load 15 on 2 cores says little about an idle one).

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


SETTLE_S = 20.0


def settle() -> None:
    """Let a server that just answered finish its start-up work (loopml's warm-up thread
    compiles templates and imports SciPy; MLflow imports lazily) before timing it."""
    time.sleep(SETTLE_S)


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


def loopml_search(client: httpx.Client, url: str) -> None:
    r = client.get(
        f"{url}/api/v1/runs",
        params={"experiment": SEARCH_EXPERIMENT, "filter": FILTER, "limit": PAGE},
        timeout=60,
    )
    runs = r.json()["runs"]
    check_page([x["name"] for x in runs], [x["metrics"]["auc"] for x in runs], "loopml")


def mlflow_search(client: httpx.Client, url: str, experiment_id: str) -> None:
    r = client.post(
        f"{url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "filter": FILTER, "max_results": PAGE},
        timeout=60,
    )
    runs = r.json()["runs"]
    aucs = [next(m["value"] for m in x["data"]["metrics"] if m["key"] == "auc") for x in runs]
    check_page([x["info"]["run_name"] for x in runs], aucs, "MLflow")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# Runs in each page before its own scripts: the browser's clock (ms since navigation
# start) at which each watched selector first matched.
WATCH = """
window.__marks = {};
new MutationObserver(() => {
  for (const sel of %s) {
    if (!(sel in window.__marks) && document.querySelector(sel)) {
      window.__marks[sel] = performance.now();
    }
  }
}).observe(document, { childList: true, subtree: true });
"""
TABLE, SKETCH, PLOTLY = "#runs-table tbody tr", ".chart svg.sketch", ".chart .main-svg"


def render_times(url: str, history_run: str, repeats: int) -> dict[str, dict[str, float]]:
    """In headless Chromium: the runs page until its table is drawn; the page of a run with
    a 100,000-point metric until its chart is drawn (the server draws it into the HTML) and
    until Plotly has replaced it with the interactive chart.

    Times are the browser's own clock from the start of navigation (Playwright's polling
    would add its own delay on a loaded host, and Plotly may replace the server's chart
    before a poll sees it). "Drawn" is the later of the element's arrival in the document
    and the first contentful paint.

    One browser profile on disk, as a returning user has: its HTTP cache and V8's code
    cache persist between visits. The first visit of each page is reported apart (cold:
    nothing cached); "warm" is the median of the ``repeats`` visits after it.
    """
    import tempfile

    from playwright.sync_api import sync_playwright

    pages = (
        ("runs_page", f"/runs?experiment={SEARCH_EXPERIMENT}", [TABLE], TABLE),
        ("run_page_100k", f"/runs/{history_run}", [SKETCH, PLOTLY], PLOTLY),
    )
    out: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-server-chromium-") as profile,
        sync_playwright() as p,
    ):
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context.add_init_script(WATCH % json.dumps([TABLE, SKETCH, PLOTLY]))
        for name, path, marks, last in pages:
            visits: list[dict[str, float]] = []
            loads: list[float] = []
            for _ in range(repeats + 1):
                page = context.new_page()
                loads.append(load_average())
                page.goto(url + path, wait_until="load")
                page.locator(last).first.wait_for(state="attached", timeout=120_000)
                seen, load_end, fcp = page.evaluate(
                    "[window.__marks,"
                    " performance.getEntriesByType('navigation')[0].loadEventEnd,"
                    " performance.getEntriesByName('first-contentful-paint')[0].startTime]"
                )
                if any(m not in seen for m in marks):
                    sys.exit(f"{path}: never saw {[m for m in marks if m not in seen]}")
                visit = {"load": load_end / 1000, "fcp": fcp / 1000}
                for i, selector in enumerate(marks):
                    visit[f"mark{i}"] = max(seen[selector], fcp) / 1000
                visits.append(visit)
                page.close()
                loads.append(load_average())
            row: dict[str, float] = {"load_avg_min": min(loads), "load_avg_max": max(loads)}
            for label in visits[0]:
                row[f"cold_{label}"] = visits[0][label]
                row[f"warm_{label}"] = statistics.median(v[label] for v in visits[1:])
            out[name] = row
        context.close()
    return out


def fill_both(work: Path, runs: int, mlflow_python: str) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    spec = Spec(str(work), 0, 0, 0, 0, runs=make_runs(runs))
    spec_path = work / "spec.json"
    spec.dump(spec_path)
    say(f"loopml: {runs:,} runs + one run with a {HISTORY_POINTS:,}-point metric")
    loopml_setup, history_run = fill_loopml(work / "loopml", spec)
    say(f"MLflow: the same {runs:,} runs")
    mlflow_db = work / "mlflow" / "mlflow.db"
    mlflow_db.parent.mkdir()
    made = subprocess.run(
        [mlflow_python, str(HERE / "mlflow_side.py"), str(spec_path), str(mlflow_db)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        "runs": runs,
        "history_run": history_run,
        "loopml_setup_s": loopml_setup,
        "mlflow": json.loads(made.stdout.strip().splitlines()[-1]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--mlflow-python", default=str(DEFAULT_MLFLOW))
    ap.add_argument(
        "--workdir", help="keep the filled stores here; a later run with it reuses them"
    )
    ap.add_argument(
        "--doc", action="store_true", help="also write the table into docs/benchmarks-server.md"
    )
    args = ap.parse_args()
    if not Path(args.mlflow_python).exists():
        sys.exit(
            f"no MLflow Python at {args.mlflow_python}: python -m venv /tmp/mlflow-venv && "
            "/tmp/mlflow-venv/bin/python -m pip install mlflow"
        )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-server-"))
    saved = work / "setup.json"
    if saved.exists():
        say(f"reusing the stores in {work} (delete {saved} to fill them again)")
        setup_info = json.loads(saved.read_text())
    else:
        setup_info = fill_both(work, args.runs, args.mlflow_python)
        saved.write_text(json.dumps(setup_info))
    if setup_info["runs"] != args.runs:
        sys.exit(f"{work} holds {setup_info['runs']:,} runs, not {args.runs:,}")
    home = work / "loopml"
    mlflow_db = work / "mlflow" / "mlflow.db"
    history_run, loopml_setup = setup_info["history_run"], setup_info["loopml_setup_s"]
    mlflow_info = setup_info["mlflow"]

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
        settle()
        search_loads = f"{load_average():.1f}"
        with httpx.Client() as client:
            loopml_s = median_time(lambda: loopml_search(client, url), args.repeats)
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
        settle()
        with httpx.Client() as client:
            mlflow_s = median_time(
                lambda: mlflow_search(client, murl, mlflow_info["experiment_id"]), args.repeats
            )
        search_loads += f" / {load_average():.1f}"
    finally:
        stop(proc)

    ratio = mlflow_s / loopml_s
    rp, run = renders["runs_page"], renders["run_page_100k"]

    def ms(x: float) -> str:
        return f"{x * 1000:,.0f} ms"

    def loads(row: dict[str, float]) -> str:
        return f"{row['load_avg_min']:.1f}-{row['load_avg_max']:.1f}"

    def met(x: float) -> str:
        return "yes" if x < 1 else "no"

    visits = f"first visit / median of {max(3, args.repeats // 4)} later visits"
    lines = [
        f"| search a page of {PAGE} runs, `{FILTER}`, {args.runs:,} runs, HTTP, median of "
        f"{args.repeats} | {loopml_s * 1000:.1f} ms | {mlflow_s * 1000:.1f} ms | {ratio:.1f}x "
        f"| >= 10x | {'yes' if ratio >= 10 else 'no'} | {search_loads} |",
        f"| runs page until its table is drawn ({visits}) | {ms(rp['cold_mark0'])} / "
        f"{ms(rp['warm_mark0'])} | | | < 1 s | {met(rp['warm_mark0'])} | {loads(rp)} |",
        f"| run page, {HISTORY_POINTS:,}-point metric, until its chart is drawn ({visits}) | "
        f"{ms(run['cold_mark0'])} / {ms(run['warm_mark0'])} | | | < 1 s | "
        f"{met(run['warm_mark0'])} | {loads(run)} |",
        f"| same page, until Plotly's interactive chart replaced it ({visits}) | "
        f"{ms(run['cold_mark1'])} / {ms(run['warm_mark1'])} | | | | | {loads(run)} |",
        f"| same page, in the browser's clock: first contentful paint / load event (later "
        f"visits) | {ms(run['warm_fcp'])} / {ms(run['warm_load'])} | | | | | {loads(run)} |",
    ]
    header = "| | loopml | MLflow | ratio | target | met? | load average |"
    table = "\n".join([header, "|---|---:|---:|---:|---:|---|---|", *lines])
    print(table)
    setup = (
        f"Setup, not timed above: loopml {loopml_setup:.0f} s (its tracker, one run at a time), "
        f"MLflow {mlflow_info['setup_s']:.0f} s (its store's ORM rows, 1,000 runs a "
        f"transaction) for {args.runs:,} runs."
    )
    say(setup)
    if args.doc:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        block = (
            f"`python bench/server/run.py --runs {args.runs} --repeats {args.repeats} --doc` "
            f"({stamp}; {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, MLflow from {args.mlflow_python}).\n\n{table}\n\n"
            f"{setup}\n"
        )
        write_block(REPO / "docs" / "benchmarks-server.md", block)
    return 0 if ratio >= 10 else 1


def write_block(doc: Path, block: str) -> None:
    """Replace the text between the markers in ``doc``, keeping the notes around it."""
    start, end = "<!-- bench/server/run.py:start -->", "<!-- bench/server/run.py:end -->"
    text = doc.read_text() if doc.exists() else f"{start}\n{end}\n"
    if start not in text or end not in text:
        text = f"{text.rstrip()}\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{block}{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
