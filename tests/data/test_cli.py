from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from loopml.cli.data_cmd import app
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.data.catalog import Catalog
from loopml.data.drift import drift
from loopml.data.profile import profile
from loopml.data.validate import validate
from loopml.store.workspace import Workspace

runner = CliRunner()


@pytest.fixture
def files(loopml_home: Path, flights: pl.DataFrame, tmp_path: Path) -> dict[str, Path]:
    paths = {
        "janfeb": tmp_path / "janfeb.parquet",
        "julaug": tmp_path / "julaug.parquet",
        "broken": tmp_path / "broken.parquet",
    }
    flights.filter(pl.col("month").is_in([1, 2])).write_parquet(paths["janfeb"])
    flights.filter(pl.col("month").is_in([7, 8])).write_parquet(paths["julaug"])
    flights.filter(pl.col("month") == 7).drop("temp").write_parquet(paths["broken"])
    return paths


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_add_ls_show_diff_verify(files: dict[str, Path], tmp_path: Path) -> None:
    out = _ok(["add", "flights", str(files["janfeb"]), "-d", "NYC flights", "-t", "faa"])
    assert "added flights:1" in out
    assert "already stored as flights:1" in _ok(["add", "flights", str(files["janfeb"])])
    again = _ok(["add", "flights", str(files["janfeb"]), "-d", "[/x] other"])
    assert "already stored as flights:1" in again
    assert "description (kept 'NYC flights') not applied" in again
    assert "added flights:2" in _ok(["add", "flights", str(files["julaug"])])
    listing = _ok(["ls", "--tag", "faa"])
    assert "flights" in listing and "NYC flights" in listing
    assert "0 datasets" in _ok(["ls", "--column", "nope"])
    shown = _ok(["show", "flights:1"])
    assert "flights:1" in shown and "temp" in shown and "carrier" in shown
    assert "name: temp" in _ok(["show", "flights", "--schema"])
    html = tmp_path / "drift.html"
    diff = _ok(["diff", "flights:1", "flights:2", "--html", str(html)])
    assert "temp" in diff and "drift" in diff and html.exists()
    assert "ok" in _ok(["verify"])


def test_validate_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    _ok(["add", "flights", str(files["janfeb"])])
    warnings_only = _ok(["validate", str(files["julaug"]), "--against", "flights:1", "--skew"])
    assert "passed" in warnings_only and "out_of_range" in warnings_only
    failed = runner.invoke(
        app, ["validate", str(files["broken"]), "-a", "flights"], terminal_width=200
    )
    assert failed.exit_code == 1
    assert "missing_column" in failed.output and "failed" in failed.output
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(_ok(["schema", "flights"]))
    assert "passed" in _ok(["validate", str(files["julaug"]), "--schema", str(schema_file)])
    assert "version 1" in _ok(["schema", "flights", "--set", str(schema_file)])


def test_user_mistakes_raise_loopml_errors(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["show", "nope"])
    assert isinstance(result.exception, NotFoundError)
    result = runner.invoke(app, ["validate", str(files["julaug"])])
    assert isinstance(result.exception, InvalidInputError)
    result = runner.invoke(app, ["add", "flights", str(files["janfeb"]) + ".missing"])
    assert isinstance(result.exception, NotFoundError)
    # a missing file is reported as a missing file, not as a malformed dataset name
    missing = str(files["janfeb"].parent / "nowhere" / "march.csv")
    result = runner.invoke(app, ["validate", missing, "--against", "flights"])
    assert isinstance(result.exception, NotFoundError)
    assert "no file or folder" in str(result.exception)


def test_verify_fails_on_tampering(files: dict[str, Path], loopml_home: Path) -> None:
    _ok(["add", "flights", str(files["janfeb"])])
    objects = sorted(
        (loopml_home / "artifacts" / "objects").rglob("*"), key=lambda p: p.stat().st_size
    )
    biggest = [p for p in objects if p.is_file()][-1]
    biggest.write_bytes(biggest.read_bytes()[:-10])
    result = runner.invoke(app, ["verify"], terminal_width=300)
    assert result.exit_code == 1
    assert "flights:1 file part-00000.parquet" in result.output


def test_flights_validate_each_month_and_drift_where_the_weather_moved(
    workspace: Workspace, flights: pl.DataFrame
) -> None:
    """Jan-Feb as a dataset version (profile + inferred schema); each later month is valid
    against its schema, and July drifts in temperature and dew point, not in carrier or
    hour. (Was the old demo's data stage, on the library calls it made.)"""
    train = flights.filter(pl.col("month").is_in([1, 2]))
    ds = Catalog(workspace).add("flights", train)
    assert ds.ref == "flights:1" and ds.schema is not None
    for month in range(3, 13):
        assert validate(flights.filter(pl.col("month") == month), ds.schema).ok, month
    july = drift(ds.profile, profile(flights.filter(pl.col("month") == 7)))
    assert {"temp", "dewp"} <= set(july.drifted_columns)
    assert "carrier" not in july.drifted_columns and "hour" not in july.drifted_columns
