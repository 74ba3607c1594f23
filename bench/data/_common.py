"""Shared helpers: timing, result tables, the competitor venv."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# Evidently and DVC pin versions that clash with loopml's (pandas < 3, plotly < 6), so they
# live in their own venv and run in a subprocess; see docs/benchmarks-data.md.
VENV = os.environ.get("LOOPML_BENCH_VENV", "/tmp/loopml-bench-venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")


def timed(
    fn: Callable[[], Any], repeat: int = 1, before: Callable[[], Any] | None = None
) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs, and the last result; ``before`` runs untimed."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def venv_run(code: str, *args: str) -> str:
    if not os.path.exists(VENV_PYTHON):
        sys.exit(
            f"competitor venv missing: python -m venv {VENV} && {VENV}/bin/pip install "
            "evidently 'pandas<3' dvc polars pyarrow"
        )
    out = subprocess.run(
        [VENV_PYTHON, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def row(*cells: object) -> None:
    """Print one Markdown table row."""
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
