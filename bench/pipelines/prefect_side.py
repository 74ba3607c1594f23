"""Prefect half, run under its own virtualenv: tasks cached on inputs + task source."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
HOME = tempfile.mkdtemp(prefix="prefect-bench-")
os.environ.setdefault("PREFECT_HOME", HOME)
os.environ.setdefault("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{HOME}/p.db")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", f"{HOME}/results")

import workload as w  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import INPUTS, TASK_SOURCE  # noqa: E402

policy = INPUTS + TASK_SOURCE
source = task(w.source, cache_policy=policy, persist_result=True)
scale = task(w.scale, cache_policy=policy, persist_result=True)
shift = task(w.shift, cache_policy=policy, persist_result=True)
clip = task(w.clip, cache_policy=policy, persist_result=True)
square = task(w.square, cache_policy=policy, persist_result=True)
normalise = task(w.normalise, cache_policy=policy, persist_result=True)
combine = task(w.combine, cache_policy=policy, persist_result=True)
stats = task(w.stats, cache_policy=policy, persist_result=True)


@flow(persist_result=True)
def ten_steps(n: int = w.N) -> dict[str, float]:
    s = source(n)
    e = normalise(square(clip(shift(scale(s, 2.0), 1.0), 150.0)))
    g = shift(scale(s, 0.5), -1.0)
    return stats(combine(e, g))


def main() -> None:
    expected = w.plain()
    ten_steps(10)  # warm-up: starts Prefect's local server, creates its database
    t = time.perf_counter()
    assert ten_steps(w.N) == expected
    cold = time.perf_counter() - t
    calls_after_first = w.CALLS[0]
    cached = []
    for _ in range(5):
        t = time.perf_counter()
        assert ten_steps(w.N) == expected
        cached.append(time.perf_counter() - t)
        assert w.CALLS[0] == calls_after_first, "a cached re-run executed a step"
    import prefect

    print(
        json.dumps(
            {
                "first_run": cold,
                "cached_run": statistics.median(cached),
                "version": prefect.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
