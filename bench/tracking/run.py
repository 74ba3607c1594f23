"""Experiment tracking, loopml vs MLflow (SQLite backend, file artifact store), in one command.

    python bench/tracking/run.py                 # the full benchmark (~15 minutes)
    python bench/tracking/run.py --runs 500 --points 10000 --no-doc   # a quick smoke run

Each tool runs in its own child process, one after the other (never at the same time), on
the same machine, against a fresh SQLite database in a temporary directory. MLflow runs
under a Python that has it: this interpreter if it does, else a virtual environment at
/tmp/mlflow-venv that is created on first use (``pip install mlflow`` into the system Python
would change versions of packages loopml depends on). Every timed write is read back and
checked; a failed check fails the benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workload import Spec, make_runs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_VENV = Path("/tmp/mlflow-venv")
DEFAULT_DOC = REPO / "docs" / "benchmarks-tracking.md"

TARGET_PER_CALL = 500.0
TARGET_DURABLE = 20.0
TARGET_SEARCH = 10.0


@dataclass(frozen=True)
class Row:
    operation: str
    loopml: str
    mlflow: str
    ratio: float | None
    target: float | None

    @property
    def met(self) -> str:
        if self.target is None or self.ratio is None:
            return "—"
        return "yes" if self.ratio >= self.target else "**NO**"

    def cells(self) -> list[str]:
        return [
            self.operation,
            self.loopml,
            self.mlflow,
            "—" if self.ratio is None else fmt_ratio(self.ratio),
            "—" if self.target is None else f"≥ {self.target:,.0f}x",
            self.met,
        ]


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:,.2f} s"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def markdown_table(rows: list[Row]) -> str:
    header = ["operation", "loopml", "MLflow", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


# --- MLflow's interpreter --------------------------------------------------------------
def mlflow_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def find_mlflow_python(requested: str | None, install: bool) -> str:
    """The interpreter to run the MLflow side with; creates the default venv if allowed."""
    if requested is not None:
        if mlflow_version(requested) is None:
            sys.exit(f"{requested} cannot import mlflow; run: {requested} -m pip install mlflow")
        return requested
    if importlib.util.find_spec("mlflow") is not None:
        return sys.executable
    venv_python = DEFAULT_VENV / "bin" / "python"
    if venv_python.exists() and mlflow_version(str(venv_python)) is not None:
        return str(venv_python)
    make = f"{sys.executable} -m venv {DEFAULT_VENV} && {venv_python} -m pip install mlflow"
    if not install:
        sys.exit(f"MLflow is not installed; run: {make}  (or pass --mlflow-python PATH)")
    print(f"creating {DEFAULT_VENV} with MLflow (once): {make}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_VENV)], check=True)
    subprocess.run([str(venv_python), "-m", "pip", "install", "mlflow"], check=True)
    if mlflow_version(str(venv_python)) is None:
        sys.exit(f"installing MLflow into {DEFAULT_VENV} failed; run by hand: {make}")
    return str(venv_python)


# --- machine facts -----------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GB"
    except OSError:
        pass
    return "unknown"


def filesystem_of(path: str) -> str:
    """The filesystem type the temporary data lives on (fsync costs differ a lot)."""
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if path.startswith(mount) and len(mount) > len(best):
                best, fstype = mount, parts[2]
    except (OSError, IndexError):
        pass
    return fstype


def machine_facts(tmp: str, lm: dict[str, Any], ml: dict[str, Any], ml_python: str) -> list[str]:
    return [
        f"- nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"- CPU: {cpu_model()}; memory: {memory_gb()}; kernel: {platform.release()}",
        f"- temporary data on: {filesystem_of(tmp)} ({tmp})",
        f"- loopml {lm['version']} on Python {lm['python']} ({sys.executable}), "
        f"SQLite {lm['sqlite']}",
        f"- MLflow {ml['version']} on Python {ml['python']} ({ml_python}), SQLite {ml['sqlite']}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


# --- running the sides -----------------------------------------------------------------------
def run_side(python: str, script: str, spec: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([python, str(HERE / script), str(spec), str(out)], env=env)
    if proc.returncode != 0 or not out.exists():
        sys.exit(f"{script} failed (exit {proc.returncode}); see its output above")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def build_rows(lm: dict[str, Any], ml: dict[str, Any], spec: Spec) -> list[Row]:
    lpc, mpc = lm["per_call"], ml["per_call"]
    ldu, mdu = lm["durable"], ml["durable"]
    lse, mse = lm["search"], ml["search"]
    n = spec.points
    per_call_ratio = mpc["per_call_s"] / lpc["per_call_s"]
    return [
        Row(
            f"`log_metric`, mean time per call as the caller sees it "
            f"(loopml: {lpc['calls']:,} calls; MLflow: {mpc['calls']:,}-call sample)",
            fmt_time(lpc["per_call_s"]),
            fmt_time(mpc["per_call_s"]),
            per_call_ratio,
            TARGET_PER_CALL,
        ),
        Row(
            f"{n:,} `log_metric` calls, caller-side total (MLflow extrapolated from the sample)",
            fmt_time(lpc["seconds"]),
            f"≈ {fmt_time(mpc['per_call_s'] * n)} (extrapolated)",
            per_call_ratio,
            None,
        ),
        Row(
            f"{n:,} points stored, final flush included (loopml: `log_metric` x{n:,} + "
            f"`flush`; MLflow: `log_batch` x{mdu['batches']} of {mdu['batch_size']:,})",
            fmt_time(ldu["seconds"]),
            fmt_time(mdu["seconds"]),
            mdu["seconds"] / ldu["seconds"],
            TARGET_DURABLE,
        ),
        Row(
            f"`search_runs` `metrics.auc > 0.7 and params.depth = '6'` over "
            f"{lse['runs']:,} runs → {lse['matches']:,} runs, median of "
            f"{len(lse['times_s'])} (runs as objects; MLflow `output_format='list'`)",
            fmt_time(lse["median_s"]),
            fmt_time(mse["median_s"]),
            mse["median_s"] / lse["median_s"],
            TARGET_SEARCH,
        ),
        Row(
            "same search, as a pandas DataFrame (loopml `.to_pandas()`; MLflow default)",
            fmt_time(lse["pandas_median_s"]),
            fmt_time(mse["pandas_median_s"]),
            mse["pandas_median_s"] / lse["pandas_median_s"],
            None,
        ),
        Row(
            f"read back the {n:,}-point history (`metric_history` / `get_metric_history`)",
            fmt_time(ldu["readback_s"]),
            fmt_time(mdu["readback_s"]),
            mdu["readback_s"] / ldu["readback_s"],
            None,
        ),
        Row(
            f"setup, not in any ratio: create {lse['runs']:,} runs with 3 params + 3 metrics",
            fmt_time(lse["setup_s"]),
            fmt_time(mse["setup_s"]),
            mse["setup_s"] / lse["setup_s"],
            None,
        ),
    ]


def notes(lm: dict[str, Any], ml: dict[str, Any], spec: Spec, ml_python: str) -> list[str]:
    lp, mp = lm["pragmas"], ml["pragmas"]
    ldu, mdu = lm["durable"], ml["durable"]
    return [
        f"- MLflow's per-call time is measured on {ml['per_call']['calls']:,} real "
        f"`mlflow.log_metric` calls (SQLite, synchronous, inside `mlflow.start_run`) and "
        f"extrapolated to {spec.points:,}; everything else runs in full on both sides.",
        "- Per-call times are one timed loop divided by the number of calls, so they include "
        "the loop itself; loopml's background writer runs during the loop (as in real use).",
        f"- Durability differs: loopml's SQLite runs with journal_mode={lp['journal_mode']}, "
        f"synchronous={lp['synchronous']} (NORMAL: a commit survives a crash of the process, "
        f"the last commits can be lost on power failure); MLflow's with journal_mode="
        f"{mp['journal_mode']}, synchronous={mp['synchronous']} (fsync on every commit).",
        "- Checked, or the benchmark fails: each timed series is read back in full with exact "
        "steps and values; every search returns exactly the expected run names (computed "
        "from the workload), identical on both sides.",
        "- Runs for the search are created the fastest honest way each tool offers, neither "
        "capturing git/package environment: loopml `start_run(params=..., "
        "capture_environment=False)` + `log_metric` x3 + `end()`; MLflow "
        "`MlflowClient.create_run` + `log_batch` (3 metrics + 3 params) + `set_terminated`.",
        f"- Where loopml's {spec.points:,}-point time goes: {fmt_time(ldu['logging_s'])} in the "
        f"`log_metric` calls, {fmt_time(ldu['final_flush_s'])} in the final `flush()`. "
        f"MLflow: {fmt_time(mdu['seconds'] / mdu['batches'])} per `log_batch` of "
        f"{mdu['batch_size']:,}.",
        f"- Search timings: one warm-up call each, then the median of {spec.search_repeats}; "
        f"both return full runs (params, latest metrics, tags).",
        f"- Each side ran in its own child process, one after the other; MLflow under {ml_python}.",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000, help="metric points for part 1")
    ap.add_argument(
        "--mlflow-sample", type=int, default=2_000, help="timed mlflow.log_metric calls"
    )
    ap.add_argument("--batch-size", type=int, default=1_000, help="MLflow log_batch size")
    ap.add_argument("--runs", type=int, default=10_000, help="runs to search over")
    ap.add_argument("--repeats", type=int, default=5, help="timed searches per side (median)")
    ap.add_argument("--mlflow-python", help="a Python that can import mlflow")
    ap.add_argument(
        "--no-install", action="store_true", help=f"do not create {DEFAULT_VENV} if missing"
    )
    ap.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="Markdown file to write")
    ap.add_argument("--no-doc", action="store_true", help="print only, write no file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if min(args.points, args.mlflow_sample, args.batch_size, args.runs, args.repeats) < 1:
        ap.error("sizes must be positive")
    ml_python = find_mlflow_python(args.mlflow_python, install=not args.no_install)

    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="loopml-bench-tracking-")
    work = Path(tmp)
    spec = Spec(
        workdir=tmp,
        points=args.points,
        mlflow_sample=min(args.mlflow_sample, args.points),
        batch_size=args.batch_size,
        search_repeats=args.repeats,
        runs=make_runs(args.runs),
    )
    spec_path = work / "spec.json"
    spec.dump(spec_path)
    try:
        lm = run_side(sys.executable, "loopml_side.py", spec_path, work / "loopml.json")
        ml = run_side(ml_python, "mlflow_side.py", spec_path, work / "mlflow.json")
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", tmp], check=False)
    rows = build_rows(lm, ml, spec)
    table = markdown_table(rows)
    note_lines = notes(lm, ml, spec, ml_python)
    facts = machine_facts(tmp, lm, ml, ml_python)
    facts.append(
        f"- wall time of the whole benchmark: {(time.perf_counter() - started) / 60:.1f} min"
    )
    command = shlex.join(["python", "bench/tracking/run.py", *sys.argv[1:]])
    print()
    print(table)
    print()
    print("\n".join(note_lines))
    print()
    print("\n".join(facts))
    print(f"\nre-run from the repository root: {command}")
    if not args.no_doc:
        args.doc.write_text(
            "# Benchmark: experiment tracking, loopml vs MLflow\n\n"
            "Re-run from the repository root (most of the time goes to MLflow creating "
            f"runs):\n\n```bash\n{command}\n```\n\n"
            f"{table}\n\n" + "\n".join(note_lines) + "\n\n## Machine\n\n" + "\n".join(facts) + "\n"
        )
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
