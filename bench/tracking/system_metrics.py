"""Does sampling system metrics slow ``log_metric``? The same loop, sampler off and on.

    python bench/tracking/system_metrics.py                    # 200,000 calls x 5 rounds
    python bench/tracking/system_metrics.py --calls 50000 --rounds 3

Each round times ``run.log_metric`` in a run without system metrics and in a run sampling
every 0.05 s (200x the default rate, so the sampler runs throughout), alternating which
goes first. Every run is read back: all points of the logged metric, and on the sampled
run at least two samples of each core system metric. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

INTERVAL = 0.05
CORE = (
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/process_memory_rss_megabytes",
)


def timed_run(tracker: Tracker, calls: int, interval: float | None) -> float:
    run = tracker.start_run("bench", system_metrics_interval=interval)
    log = run.log_metric
    start = time.perf_counter()
    for i in range(calls):
        log("loss", 1.0 / (i + 1), step=i)
    elapsed = time.perf_counter() - start
    if interval is not None:
        sampler = run._sampler
        assert sampler is not None
        deadline = time.monotonic() + 30
        while sampler.samples < 2:  # a short round: wait for the minimum to check
            assert time.monotonic() < deadline, "the sampler took no samples within 30 s"
            time.sleep(interval)
    run.end()
    history = tracker.metric_history(run.id, "loss")
    assert history.steps.tolist() == list(range(calls)), "points were lost"
    metrics = tracker.get_run(run.id).metrics
    if interval is None:
        assert not any(k.startswith("system/") for k in metrics)
    else:
        for key in CORE:
            assert len(tracker.metric_history(run.id, key).values) >= 2, key
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(f"sqlite:///{Path(tmp) / 'bench.db'}", str(Path(tmp) / "artifacts"))
        tracker = Tracker(ws)
        off: list[float] = []
        on: list[float] = []
        for r in range(args.rounds):
            order = [(off, None), (on, INTERVAL)]
            for series, interval in order if r % 2 == 0 else order[::-1]:
                series.append(timed_run(tracker, args.calls, interval))
        tracker.close()
        ws.close()
    off_us, on_us = statistics.median(off) * 1e6, statistics.median(on) * 1e6
    print(f"log_metric x{args.calls:,}, median of {args.rounds} rounds")
    print("| system metrics | per call | ratio |")
    print("|---|---:|---:|")
    print(f"| off | {off_us:.2f} µs | 1.00 |")
    print(f"| on, every {INTERVAL} s | {on_us:.2f} µs | {on_us / off_us:.2f} |")


if __name__ == "__main__":
    main()
