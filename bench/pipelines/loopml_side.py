"""loopml half: the workload as @step functions; prints JSON timings."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w

from loopml.pipelines.definition import pipeline
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.step import step
from loopml.store.workspace import Workspace

source = step(w.source)
scale = step(w.scale)
shift = step(w.shift)
clip = step(w.clip)
square = step(w.square)
normalise = step(w.normalise)
combine = step(w.combine)
stats = step(w.stats)


@pipeline
def ten_steps(n: int = w.N):
    s = source(n)
    e = normalise(square(clip(shift(scale(s, 2.0), 1.0), 150.0)))
    g = shift(scale(s, 0.5), -1.0)
    return stats(combine(e, g))


def main() -> None:
    expected = w.plain()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(f"sqlite:///{tmp}/loopml.db", f"{tmp}/artifacts")
        # Warm-up on other inputs: imports, first connections, environment capture.
        run_pipeline(ws, ten_steps, {"n": 10})
        t = time.perf_counter()
        first = run_pipeline(ws, ten_steps, {"n": w.N})
        cold = time.perf_counter() - t
        assert len(first.executed) == w.STEPS and first.output == expected
        calls_after_first = w.CALLS[0]
        cached = []
        for _ in range(5):
            t = time.perf_counter()
            again = run_pipeline(ws, ten_steps, {"n": w.N})
            cached.append(time.perf_counter() - t)
            assert w.CALLS[0] == calls_after_first, "a cached re-run executed a step"
            assert len(again.cached) == w.STEPS and again.output == expected
        ws.close()
    print(json.dumps({"first_run": cold, "cached_run": statistics.median(cached)}))


if __name__ == "__main__":
    main()
