"""MLflow's own client against ``mlflow server`` and against ``loopml server``, one command.

    python bench/tracking/client_vs_server.py              # 10,000 runs to search
    python bench/tracking/client_vs_server.py --runs 1000 --repeats 3 --no-doc   # smoke run

The same script (``client_script.py``, run under MLflow's Python) is timed against each
server in turn, never both at once, for ``--rounds`` rounds: 1,000 ``mlflow.log_metric``
calls, one ``log_batch`` of 10,000 points, and ``mlflow.search_runs`` with a filter over
10,000 runs. Each round also times the same script against ``null_server.py``, which
answers at once and stores nothing (its search answer is loopml's, recorded beforehand):
what MLflow's client costs by itself, the floor no server can go below. The runs to
search are put into each side's store beforehand through that store (loopml's Tracker;
MLflow's tables), untimed. Both servers use SQLite in a temporary directory and one worker
process. The load average is recorded around each side, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
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
sys.path.insert(0, str(HERE))

from run import DEFAULT_VENV, cpu_model, find_mlflow_python, memory_gb  # noqa: E402
from workload import (  # noqa: E402
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    Spec,
    expected_matches,
    make_runs,
)

REPO = HERE.parent.parent
DOC = REPO / "docs" / "benchmarks-tracking-client.md"
TARGET = 5.0
LOG_CALLS = 1_000  # the mlflow.log_metric calls client_script.py times


def say(message: str) -> None:
    print(f"[client-vs-server] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], ready: str, cwd: Path) -> subprocess.Popen[bytes]:
    # Its own session, so stopping it stops the workers it spawns too.
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{cmd[0]} exited with {proc.returncode} before answering {ready}")
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop(proc)
    sys.exit(f"no answer from {ready} within 180 s")


def server_cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) the server and its worker processes have used so far."""
    import psutil

    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(p.cpu_times()[:2])
    return total


def settle(proc: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    """Wait until the server and its workers idle (under 5% of a CPU over a second):
    answering the first request is not the end of starting. loopml imports what its
    pages need in a background thread; any server may finish warming up after it answers.
    Timing only from then on measures each server's requests, not its start."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        before = server_cpu(proc)
        time.sleep(1.0)
        if server_cpu(proc) - before < 0.05:
            return
    say(f"the server still used CPU after {deadline_s:.0f} s; timing anyway")


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def fill_loopml(home: Path, spec: Spec) -> None:
    from loopml.store.workspace import Workspace
    from loopml.tracking.tracker import Tracker

    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    tr = Tracker(ws)
    for r in spec.runs:
        run = tr.start_run(
            SEARCH_EXPERIMENT, name=r.name, params=r.params, capture_environment=False
        )
        run.log_metrics(r.metrics, step=0)
        run.end()
    tr.close()
    ws.close()


# MLflow's server as both tracking benches start it: SQLite, its artifact proxy, one worker.
MLFLOW_ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}


def mlflow_server_cmd(ml_python: str, db: Path, port: str) -> list[str]:
    """``mlflow server`` on ``db`` (artifacts in an ``artifacts`` folder beside it)."""
    return [
        str(Path(ml_python).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--artifacts-destination",
        str(db.parent / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--workers",
        "1",
    ]


def run_client(
    python: str,
    url: str,
    spec_path: Path,
    out: Path,
    repeats: int,
    server: subprocess.Popen[bytes],
    *extra: str,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    cpu_before = server_cpu(server)
    done = subprocess.run(
        [python, str(HERE / "client_script.py"), str(spec_path), str(out), str(repeats), *extra],
        env={**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONUNBUFFERED": "1"},
        cwd=out.parent,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not out.exists():
        sys.exit(f"the client script failed against {url}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    result["load"] = (load_before, os.getloadavg())
    # Less sensitive to a busy machine than wall time: what the server itself spent.
    result["server_cpu_s"] = server_cpu(server) - cpu_before
    return result


def record_search(url: str, spec: Spec, out: Path) -> Path:
    """loopml's answer to the client script's search, for the floor to give back verbatim
    (one page: MLflow's client asks for up to 10,000 runs a page)."""
    api = f"{url}/api/2.0/mlflow"
    found = httpx.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": SEARCH_EXPERIMENT}
    )
    found.raise_for_status()
    body = {
        "experiment_ids": [found.json()["experiment"]["experiment_id"]],
        "filter": SEARCH_FILTER,
        "run_view_type": "ACTIVE_ONLY",
        "max_results": 10_000,
        "order_by": [],
    }
    answer = httpx.post(f"{api}/runs/search", json=body, timeout=60)
    answer.raise_for_status()
    got = answer.json()
    if got.get("next_page_token") or len(got["runs"]) != len(expected_matches(spec.runs)):
        sys.exit("loopml's search answer is not the one page of expected runs")
    out.write_bytes(answer.content)
    return out


BLOCK = 50  # log_metric calls per turn in the interleaved timing


def interleaved(python: str, servers: dict[str, str], cwd: Path) -> dict[str, float]:
    """The same 1,000 ``mlflow.log_metric`` calls against each server, in blocks of BLOCK
    taken in turn, the order rotating each block; one client process per server, each
    waiting for its cue while the others run. Every side is timed over the same stretch
    of the machine's time, which on a shared host otherwise differs by seconds."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, url in servers.items():
            procs[name] = subprocess.Popen(
                [python, str(HERE / "client_script.py"), "blocks"]
                + (["floor"] if name == "floor" else []),
                env={**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONUNBUFFERED": "1"},
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        seconds = dict.fromkeys(servers, 0.0)
        names = list(servers)
        for block in range(LOG_CALLS // BLOCK):
            for name in names[block % len(names) :] + names[: block % len(names)]:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"go {BLOCK}\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    sys.exit(f"the interleaved client against {name} stopped")
                seconds[name] += float(answer)
        for name, proc in procs.items():
            assert proc.stdin is not None
            proc.stdin.write("end\n")
            proc.stdin.close()
            if proc.wait(timeout=300) != 0:
                sys.exit(f"the interleaved client against {name} failed (read-back?)")
        return seconds
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


PARTS = ("log_metric_s", "log_batch_s", "search_list_s", "search_pandas_s")
SIDES = ("loopml", "mlflow", "floor")


def total(r: dict[str, Any]) -> float:
    return float(r["log_metric_s"] + r["log_batch_s"] + r["search_pandas_s"])


def median_of(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000, help="runs to search over")
    ap.add_argument("--repeats", type=int, default=5, help="timed searches per side (median)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds of loopml, MLflow, floor (median)"
    )
    ap.add_argument("--mlflow-python", help="a Python that can import mlflow (with its server)")
    ap.add_argument("--no-doc", action="store_true", help="print only, write no file")
    args = ap.parse_args(argv)
    # The full MLflow (with its server's dependencies) in its own venv, as run.py makes it;
    # the mlflow-skinny of loopml's test extra has the client only.
    venv = DEFAULT_VENV / "bin" / "python"
    requested = args.mlflow_python or (str(venv) if venv.exists() else None)
    ml_python = find_mlflow_python(requested, install=True)
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-client-"))
    spec = Spec(str(work), 0, 0, 0, 0, runs=make_runs(args.runs))
    spec_path = work / "spec.json"
    spec.dump(spec_path)

    say(f"filling loopml with {args.runs:,} runs (untimed)")
    home = work / "loopml"
    fill_loopml(home, spec)
    say(f"filling MLflow with {args.runs:,} runs (untimed)")
    mlflow_db = work / "mlflow" / "mlflow.db"
    mlflow_db.parent.mkdir()
    subprocess.run(
        [ml_python, str(HERE / "mlflow_populate.py"), str(spec_path), str(mlflow_db)],
        check=True,
        capture_output=True,
    )

    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(home)
    url = f"http://127.0.0.1:{free_port()}"
    murl = f"http://127.0.0.1:{free_port()}"
    nurl = f"http://127.0.0.1:{free_port()}"
    servers: list[subprocess.Popen[bytes]] = []
    try:
        say(f"loopml server on {url}, mlflow server on {murl}, the floor on {nurl}")
        port = url.rsplit(":", 1)[1]
        cmd = [sys.executable, "-m", "loopml.cli", "server", "--port", port, "--workers", "1"]
        loopml = start(cmd, env, f"{url}/api/v1/openapi.json", work)
        servers.append(loopml)
        cmd = mlflow_server_cmd(ml_python, mlflow_db, murl.rsplit(":", 1)[1])
        mlflow_proc = start(cmd, MLFLOW_ENV, f"{murl}/health", work)
        servers.append(mlflow_proc)
        settle(loopml)
        settle(mlflow_proc)
        answer = record_search(url, spec, work / "search-answer.json")
        cmd = [sys.executable, str(HERE / "null_server.py"), nurl.rsplit(":", 1)[1], str(answer)]
        floor_proc = start(cmd, env, f"{nurl}/", work)
        servers.append(floor_proc)
        # Both servers stay up and are timed in turns, round after round: a shared host
        # speeds up and slows down over minutes, and adjacent turns see the same machine.
        lm_rounds: list[dict[str, Any]] = []
        ml_rounds: list[dict[str, Any]] = []
        floor_rounds: list[dict[str, Any]] = []
        paired_rounds: list[dict[str, float]] = []
        round_lines: list[str] = []
        for n in range(args.rounds):
            say(f"round {n + 1} of {args.rounds}")
            out = work / "result.json"
            lm_rounds.append(run_client(ml_python, url, spec_path, out, args.repeats, loopml))
            ml_rounds.append(run_client(ml_python, murl, spec_path, out, args.repeats, mlflow_proc))
            floor_rounds.append(
                run_client(ml_python, nurl, spec_path, out, args.repeats, floor_proc, "floor")
            )
            turns = interleaved(ml_python, {"loopml": url, "mlflow": murl, "floor": nurl}, work)
            paired_rounds.append(turns)
            a, b, f = lm_rounds[-1], ml_rounds[-1], floor_rounds[-1]
            round_lines.append(
                f"round {n + 1}: log_metric loopml {fmt(a['log_metric_s'])}, MLflow "
                f"{fmt(b['log_metric_s'])}, floor {fmt(f['log_metric_s'])}; end to end "
                f"{fmt(total(a))} against {fmt(total(b))} ({total(b) / total(a):.2f}x); "
                f"the floor end to end {fmt(total(f))} ({total(b) / total(f):.2f}x); "
                f"interleaved log_metric: loopml {fmt(turns['loopml'])}, MLflow "
                f"{fmt(turns['mlflow'])}, floor {fmt(turns['floor'])}"
            )
            say(round_lines[-1])
    finally:
        for proc in servers:
            stop(proc)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    ratios = [total(m) / total(lm) for lm, m in zip(lm_rounds, ml_rounds, strict=True)]
    ratio = float(statistics.median(ratios))
    # What a server that cost nothing would reach: MLflow's time over the client's own.
    bounds = [total(m) / total(f) for m, f in zip(ml_rounds, floor_rounds, strict=True)]
    bound_ratio = float(statistics.median(bounds))
    lm = {key: median_of(lm_rounds, key) for key in PARTS}
    ml = {key: median_of(ml_rounds, key) for key in PARTS}
    floor = {key: median_of(floor_rounds, key) for key in PARTS}
    rows = [
        ("1,000 `mlflow.log_metric` calls", "log_metric_s"),
        ("one `log_batch` of 10,000 points (10 requests of 1,000)", "log_batch_s"),
        (
            f"`mlflow.search_runs`, {lm_rounds[0]['matches']:,} of {args.runs:,} runs, list "
            f"(median of {args.repeats})",
            "search_list_s",
        ),
        ("the same search, MLflow's default pandas DataFrame", "search_pandas_s"),
    ]
    lines = [
        f"| through MLflow's client (median of {args.rounds} rounds) | loopml server | "
        "mlflow server | ratio | the floor: MLflow's client alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        lines.append(
            f"| {label} | {fmt(lm[key])} | {fmt(ml[key])} | {ml[key] / lm[key]:.1f}x "
            f"| {fmt(floor[key])} |"
        )
    spread = ", ".join(f"{r:.2f}x" for r in ratios)
    lines.append(
        f"| **end to end** (the three parts, search as pandas; each round's ratio: {spread}) | "
        f"**{fmt(total(lm))}** | **{fmt(total(ml))}** | **{ratio:.1f}x** (median of the "
        f"rounds' ratios; target ≥ {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'}) "
        f"| {fmt(total(floor))} |"
    )
    # The same, with the log_metric part from the interleaved turns: all three sides timed
    # over the same moments, so a host's drift between turns drops out of that part.
    paired = {side: float(statistics.median(t[side] for t in paired_rounds)) for side in SIDES}
    lines.append(
        f"| 1,000 `mlflow.log_metric` calls, the three servers taking turns {BLOCK} calls at "
        f"a time (the same moments) | {fmt(paired['loopml'])} | {fmt(paired['mlflow'])} | "
        f"{paired['mlflow'] / paired['loopml']:.1f}x | {fmt(paired['floor'])} |"
    )
    with_turns = [
        {
            side: t[side] + r["log_batch_s"] + r["search_pandas_s"]
            for side, r in zip(SIDES, rs, strict=True)
        }
        for t, *rs in zip(paired_rounds, lm_rounds, ml_rounds, floor_rounds, strict=True)
    ]
    turn_ratios = [w["mlflow"] / w["loopml"] for w in with_turns]
    turn_bounds = [w["mlflow"] / w["floor"] for w in with_turns]
    lines.append(
        f"| end to end with that `log_metric` part (each round: "
        f"{', '.join(f'{r:.2f}x' for r in turn_ratios)}) | "
        f"{fmt(statistics.median(w['loopml'] for w in with_turns))} | "
        f"{fmt(statistics.median(w['mlflow'] for w in with_turns))} | "
        f"{statistics.median(turn_ratios):.1f}x | "
        f"{fmt(statistics.median(w['floor'] for w in with_turns))} "
        f"(a server that cost nothing: {statistics.median(turn_bounds):.1f}x) |"
    )
    lm_cpu = sum(r["server_cpu_s"] for r in lm_rounds)
    ml_cpu = sum(r["server_cpu_s"] for r in ml_rounds)
    lines.append(
        f"| server CPU over every round of the client script (reads-back and searches "
        f"included) | {fmt(lm_cpu)} | {fmt(ml_cpu)} | {ml_cpu / max(lm_cpu, 1e-9):.1f}x | |"
    )
    table = "\n".join(lines)
    spread = ", ".join(f"{r:.2f}x" for r in bounds)
    bound = (
        f"The floor is the same script against `null_server.py`, which answers at once and "
        f"stores nothing (its search answer is loopml's, recorded beforehand): what MLflow's "
        f"client costs by itself, whichever server it talks to. A server that cost nothing "
        f"at all would be {bound_ratio:.1f}x faster than MLflow's end to end here (median of "
        f"the rounds; each round: {spread}). loopml's time above that floor: "
        f"{(lm['log_metric_s'] - floor['log_metric_s']) / LOG_CALLS * 1000:.2f} ms per "
        f"`log_metric` call (MLflow's "
        f"{(ml['log_metric_s'] - floor['log_metric_s']) / LOG_CALLS * 1000:.2f} ms), "
        f"{fmt(lm['log_batch_s'] - floor['log_batch_s'])} for the batch, "
        f"{fmt(lm['search_pandas_s'] - floor['search_pandas_s'])} for the search."
    )
    loads = "; ".join(
        f"round {i + 1}: loopml {'/'.join(f'{x:.1f}' for x in a['load'][0])}, MLflow "
        f"{'/'.join(f'{x:.1f}' for x in b['load'][0])}"
        for i, (a, b) in enumerate(zip(lm_rounds, ml_rounds, strict=True))
    )
    command = shlex.join(["python", "bench/tracking/client_vs_server.py", *sys.argv[1:]])
    facts = (
        f"MLflow {ml_rounds[0]['mlflow']} client and server ({ml_python}); loopml server on "
        f"{sys.executable}; {os.cpu_count()} CPUs ({cpu_model()}), {memory_gb()}, "
        f"Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(table)
    print(bound)
    print(f"load average (1/5/15 min) before each side: {loads}")
    print(facts)
    if not args.no_doc:
        DOC.write_text(
            "# MLflow's client: `loopml server` vs `mlflow server`\n\n"
            f"Re-run from the repository root: `{command}`\n\n{table}\n\n- {bound}\n"
            + "".join(f"- {line}\n" for line in round_lines)
            + f"- load average (1/5/15 min) before each side: {loads}\n- {facts}\n"
            "- Both servers: SQLite in a temporary directory, one worker, on loopback, both up "
            "for the whole run; the same client script (`bench/tracking/client_script.py`) "
            "under MLflow's Python against one server at a time, in turns (loopml, MLflow, the "
            "floor) round after round, then the three together in interleaved turns; against "
            "the floor nothing is read back. The runs "
            "searched were put in through each side's store before timing; every write is "
            "read back and every search answer checked.\n"
        )
        say(f"wrote {DOC}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
