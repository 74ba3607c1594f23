"""The workload both sides of the tracking benchmark run, and the spec/result exchange.

Standard library only: this module is imported by the loopml side (system Python) and by
the MLflow side (its own virtual environment, where loopml is not installed).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SEARCH_EXPERIMENT = "bench-search"
SEARCH_FILTER = "metrics.auc > 0.7 and params.depth = '6'"
METRIC_KEY = "loss"
WARMUP_KEY = "warmup"
WARMUP_CALLS = 50
LOG_EXPERIMENT = "bench-log"
SEARCH_LIMIT = 100_000


@dataclass(frozen=True)
class RunSpec:
    """One of the runs the search benchmark creates, identical on both sides."""

    name: str
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class Spec:
    """What a side process is asked to do; written as JSON by the orchestrator."""

    workdir: str
    points: int
    mlflow_sample: int
    batch_size: int
    search_repeats: int
    runs: list[RunSpec] = field(default_factory=list)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @staticmethod
    def load(path: Path) -> Spec:
        raw: dict[str, Any] = json.loads(path.read_text())
        runs = [RunSpec(**r) for r in raw.pop("runs")]
        return Spec(**raw, runs=runs)


def make_runs(count: int, seed: int = 20240611) -> list[RunSpec]:
    """``count`` runs with a few params and metrics: auc uniform in [0.5, 0.9], depth 3..10."""
    rng = random.Random(seed)
    out: list[RunSpec] = []
    for i in range(count):
        auc = rng.uniform(0.5, 0.9)
        out.append(
            RunSpec(
                name=f"run-{i:05d}",
                params={
                    "depth": str(rng.randint(3, 10)),
                    "learning_rate": rng.choice(["0.01", "0.03", "0.1", "0.3"]),
                    "n_estimators": str(rng.choice([100, 200, 400, 800])),
                },
                metrics={
                    "auc": auc,
                    "accuracy": rng.uniform(0.6, 0.95),
                    "log_loss": rng.uniform(0.2, 0.7),
                },
            )
        )
    return out


def expected_matches(runs: list[RunSpec]) -> set[str]:
    """The run names SEARCH_FILTER must return, computed without any tracking tool."""
    return {r.name for r in runs if r.metrics["auc"] > 0.7 and r.params["depth"] == "6"}


def point_value(step: int) -> float:
    """The value logged at ``step``; read-backs are compared against it exactly."""
    return 1.0 / (step + 1)


def write_result(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


class CheckFailed(Exception):
    """A read-back did not match what was written: the timing it belongs to is invalid."""


def say(side: str, message: str) -> None:
    """Progress on stderr; stdout is kept for results."""
    print(f"[{side}] {message}", file=sys.stderr, flush=True)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)
