"""The demo's model stage: register the trained model, gate it, promote it to champion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.demo.flights import TARGET
from loopml.demo.training import to_pandas_features
from loopml.registry.gates import (
    Gate,
    GateResult,
    NoWorseThanChampion,
    SchemaCompatible,
    SliceThreshold,
    SmokeTest,
    Threshold,
)
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import PromotionResult, promote
from loopml.store.workspace import Workspace
from loopml.tracking.store import RunStore

MODEL_NAME = "delay-model"
ALIAS = "champion"

DEMO_GATE = Gate(
    (
        Threshold("roc_auc", min=0.65),
        NoWorseThanChampion("roc_auc", max_drop=0.01),
        SliceThreshold("origin", "roc_auc", min=0.6, min_rows=500),
        SchemaCompatible(),
        # The smoke test proves the model loads from verified bytes and answers. Its
        # latency limit is a minute, not a service level: on a shared 2-core machine under
        # load 100 rows took over 2 s, and a demo (or a test) must not fail on load.
        SmokeTest(max_latency_ms=60_000, rows=100),
    ),
    target=TARGET,
    name="delay-gate",
)


def gate_table(result: GateResult, title: str) -> Table:
    table = Table(title=title)
    for col in ("check", "value", "limit", "verdict", "detail"):
        table.add_column(col, overflow="fold")
    for check, value, limit, verdict, detail in result.rows():
        style = "green" if verdict == "pass" else "bold red"
        table.add_row(check, value, limit, f"[{style}]{verdict}[/]", detail)
    return table


def run_model_stage(
    ws: Workspace,
    console: Console,
    model: Any,
    train_df: pl.DataFrame,
    eval_df: pl.DataFrame,
    run_id: str | None,
    *,
    dataset_ids: Sequence[str] = (),
    gate: Gate = DEMO_GATE,
) -> PromotionResult:
    """Register ``model`` (fitted on ``to_pandas_features(train_df)``), gate it on
    ``eval_df`` against the current champion, promote it if it passes, print the gate table."""
    registry = Registry(ws)
    with console.status("registering the model"):
        mv = registry.register(
            MODEL_NAME,
            model,
            to_pandas_features(train_df),
            run_id=run_id,
            code_version=None
            if run_id is None
            else RunStore(ws.engine, ws.write_engine).code_version(run_id),
            dataset_ids=dataset_ids,
            description="Gradient-boosted trees: will a flight arrive more than 15 min late?",
            tags={"source": "loopml demo"},
        )
    console.print(f"registered [bold]{mv.ref}[/] ({mv.flavor}, digest {mv.digest[:19]}...)")
    with console.status(f"gating {mv.ref} on {eval_df.height:,} held-out flights"):
        result = promote(
            ws, MODEL_NAME, mv.version, ALIAS, gate=gate, data=eval_df, dataset_ids=dataset_ids
        )
    if result.gate is not None:
        console.print(gate_table(result.gate, f"gate {gate.name!r}: {mv.ref} for {ALIAS}"))
    if result.allowed:
        console.print(
            f"[green]promoted[/] {MODEL_NAME}@{ALIAS}: "
            f"{result.from_version or '-'} -> {mv.version}\n"
            f"load it with: lm.models.load('{MODEL_NAME}@{ALIAS}')"
        )
    else:
        console.print(f"[bold red]not promoted[/]: {result.reason}")
    return result
