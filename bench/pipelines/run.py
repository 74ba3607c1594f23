"""Pipelines benchmark: a 10-step pipeline, loopml vs plain calls vs Prefect.

Run from the repository root:  python bench/pipelines/run.py [--prefect-python PATH]

Prefect pins versions of packages loopml also uses, so it lives in its own virtualenv
(default /tmp/prefect-venv: python -m venv /tmp/prefect-venv &&
/tmp/prefect-venv/bin/pip install prefect "fastapi<0.120"). Each side runs in its own
child process; results go to docs/benchmarks-pipelines.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import workload as w  # noqa: E402


def plain_time() -> float:
    w.plain()
    times = []
    for _ in range(20):
        t = time.perf_counter()
        w.plain()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def side(python: str, script: str) -> dict[str, float]:
    out = subprocess.run(
        [python, str(HERE / script)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefect-python", default="/tmp/prefect-venv/bin/python")
    args = parser.parse_args()
    plain = plain_time()
    loopml = side(sys.executable, "loopml_side.py")
    prefect = side(args.prefect_python, "prefect_side.py")
    steps = w.STEPS
    rows = [
        ("plain function calls, whole pipeline", fmt(plain), "—", "—", "—", "—"),
        (
            "first run (every step executes), whole pipeline",
            fmt(loopml["first_run"]),
            fmt(prefect["first_run"]),
            f"{prefect['first_run'] / loopml['first_run']:.1f}x",
            "—",
            "—",
        ),
        (
            "overhead per executed step over plain calls",
            fmt((loopml["first_run"] - plain) / steps),
            fmt((prefect["first_run"] - plain) / steps),
            f"{(prefect['first_run'] - plain) / (loopml['first_run'] - plain):.1f}x",
            "—",
            "—",
        ),
        (
            "fully cached re-run, whole pipeline (median of 5)",
            fmt(loopml["cached_run"]),
            fmt(prefect["cached_run"]),
            f"{prefect['cached_run'] / loopml['cached_run']:.1f}x",
            "≥ 5x and < 0.5 s",
            "yes"
            if prefect["cached_run"] / loopml["cached_run"] >= 5 and loopml["cached_run"] < 0.5
            else "**NO**",
        ),
        (
            "cost per cached step",
            fmt(loopml["cached_run"] / steps),
            fmt(prefect["cached_run"] / steps),
            "—",
            "—",
            "—",
        ),
    ]
    header = "| measure | loopml | Prefect | ratio | target | met? |\n|---|---|---|---|---|---|\n"
    table = header + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    print(table)
    cpu = platform.processor() or platform.machine()
    doc = f"""# Benchmark: pipelines, loopml vs Prefect

Re-run from the repository root (about a minute; Prefect in its own virtualenv):

```bash
python -m venv /tmp/prefect-venv && /tmp/prefect-venv/bin/pip install prefect "fastapi<0.120"
python bench/pipelines/run.py --prefect-python /tmp/prefect-venv/bin/python
```

A 10-step pipeline (a chain with a fan-out and a fan-in) of small list computations
(`bench/pipelines/workload.py`), so the timings show what each orchestrator adds per step.

{table}

- loopml: `executor="local"`, SQLite + local artifact store in a temp folder; every step
  execution and every cache hit is a tracking run with lineage; cache hits verify the
  stored output's digest before trusting it.
- Prefect {prefect.get("version", "?")}: tasks with `cache_policy=INPUTS + TASK_SOURCE`,
  results persisted to local storage, its default ephemeral local server (SQLite).
- Both: one warm-up run on other inputs first (imports, server start, database creation,
  not timed), then the first run with the benchmark's inputs, then 5 re-runs (median).
- Checked, or the benchmark fails: both sides return exactly the plain-call result, and
  a cached re-run executes no step body (a call counter in the workload stays unchanged).
- Prefect {prefect.get("version", "?")} imports `fastapi.Body(min_items=...)`, which the
  newest FastAPI no longer accepts, so its virtualenv has `fastapi<0.120`.

## Machine

- nproc: {os.cpu_count()}; CPU: {cpu}; Python {platform.python_version()}; {platform.platform()}
"""
    (ROOT / "docs" / "benchmarks-pipelines.md").write_text(doc)


if __name__ == "__main__":
    main()
