"""The demo's pipeline stage: train the delay model through a real pipeline, twice.

load -> validate -> features -> train -> evaluate. The first run executes every step;
the second finds every step in the cache and says so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.demo import training
from loopml.demo.flights import FEATURES, TARGET, flights_with_weather
from loopml.pipelines.definition import pipeline
from loopml.pipelines.records import PipelineRun
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.step import step
from loopml.pipelines.types import Dataset, Model
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@functools.cache
def _all_flights() -> pl.DataFrame:
    return flights_with_weather()


@step
def load(months: list[int]) -> Dataset:
    return _all_flights().filter(pl.col("month").is_in(months))


@step
def validate(data: Dataset, holdout: Dataset) -> dict[str, Any]:
    """The holdout month checked against the schema inferred from the training months."""
    from loopml.data.profile import profile
    from loopml.data.schema import infer_schema
    from loopml.data.validate import validate as check

    report = check(holdout, infer_schema(profile(data)))
    return {
        "ok": report.ok,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "kinds": sorted(report.kinds()),
    }


@step
def features(data: Dataset) -> Dataset:
    return data.select([*FEATURES, TARGET]).drop_nulls(TARGET)


@step
def train(data: Dataset, max_iter: int = 100) -> Model:
    return training.train_delay_model(data, max_iter=max_iter).model


@step
def evaluate(model: Model, data: Dataset, holdout: Dataset) -> dict[str, float]:
    return {"train_auc": training.auc(model, data), "holdout_auc": training.auc(model, holdout)}


@pipeline
def delay_model(train_months: list[int], holdout_month: int = 3, max_iter: int = 100) -> Any:
    data = load(train_months)
    holdout = load([holdout_month])
    validate(data, holdout)
    table = features(data)
    model = train(table, max_iter=max_iter)
    return evaluate(model, table, features(holdout))


@dataclass(frozen=True)
class PipelineStageResult:
    first: PipelineRun
    second: PipelineRun


def run_pipeline_stage(
    ws: Workspace,
    console: Console,
    *,
    train_months: tuple[int, ...] = (1, 2),
    holdout_month: int = 3,
    max_iter: int = 100,
) -> PipelineStageResult:
    """Run ``delay_model`` twice on ``ws``: executed, then entirely cached."""
    params = {
        "train_months": list(train_months),
        "holdout_month": holdout_month,
        "max_iter": max_iter,
    }
    tracker = Tracker(ws)  # one for both runs
    try:
        with console.status(
            "pipeline delay_model: load -> validate -> features -> train -> evaluate"
        ):
            first = run_pipeline(ws, delay_model, params, tracker=tracker)
        console.print(_table(first, "first run"))
        second = run_pipeline(ws, delay_model, params, tracker=tracker)
    finally:
        tracker.close()
    console.print(_table(second, "second run: same code, params and data"))
    metrics = second.output
    console.print(
        f"holdout AUC {metrics['holdout_auc']:.3f}; the second run took "
        f"{second.duration or 0:.2f}s against {first.duration or 0:.2f}s. "
        f"See it with: loopml pipeline show {second.id[:12]}"
    )
    return PipelineStageResult(first, second)


def _table(run: PipelineRun, title: str) -> Table:
    table = Table(title=f"{title} ({run.id[:12]}, {run.status}, {run.duration or 0:.2f}s)")
    for col in ("step", "inputs from", "status", "duration"):
        table.add_column(col)
    for node, rec in run.steps.items():
        style = "cyan" if rec.status in ("cached", "reused") else "green"
        deps = ", ".join(sorted(set(rec.deps.values())))
        duration = "" if rec.duration is None else f"{rec.duration:.2f}s"
        table.add_row(node, deps, f"[{style}]{rec.status}[/]", duration)
    return table
