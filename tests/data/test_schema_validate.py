from __future__ import annotations

import polars as pl
import pytest

from loopml.core.errors import InvalidInputError
from loopml.data.profile import profile
from loopml.data.schema import Check, Schema, infer_schema
from loopml.data.validate import validate


@pytest.fixture(scope="module")
def schema(jan_feb: pl.DataFrame) -> Schema:
    return infer_schema(profile(jan_feb))


def test_inferred_schema_describes_the_data(schema: Schema, jan_feb: pl.DataFrame) -> None:
    temp = schema.column("temp")
    assert temp.dtype == "Float64" and temp.nullable
    assert temp.min == jan_feb["temp"].min() and temp.max == jan_feb["temp"].max()
    assert schema.column("origin").domain == ("EWR", "JFK", "LGA")
    assert not schema.column("carrier").nullable
    assert schema.column("month").min == 1 and schema.column("month").max == 2
    assert validate(jan_feb, schema).anomalies == ()


def test_uniqueness_is_inferred_for_id_columns() -> None:
    s = infer_schema(profile(pl.DataFrame({"id": [1, 2, 3], "x": [1, 1, 2]})))
    assert s.column("id").unique and not s.column("x").unique


def test_yaml_round_trip_and_edits(schema: Schema) -> None:
    edited = (
        schema.with_column("temp", min=-40.0, max=120.0, description="°F at departure")
        .with_check("positive distance", "distance > 0")
        .with_key("month", "day", "hour", "carrier", "dest", "sched_dep_time")
    )
    text = edited.to_yaml()
    assert "°F at departure" in text and "distance > 0" in text
    back = Schema.from_yaml(text)
    assert back == edited
    assert back.column("temp").min == -40.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns: [", "not valid YAML"),
        ("columns: []", "non-empty 'columns'"),
        ("columns: [{name: a}]", "dtype must be a non-empty string"),
        ("columns: [{name: a, dtype: Int64, colour: red}]", "unknown key"),
        ("columns: [{name: a, dtype: Int64, min: 5, max: 1}]", "greater than max"),
        ("columns: [{name: a, dtype: Int64, min: low}]", "min must be a number"),
        ("columns: [{name: a, dtype: Int64}]\nkey: [b]", "not columns of the schema"),
        (
            "columns: [{name: a, dtype: Int64}]\nchecks: [{name: c, expr: 'a >>> 1'}]",
            "cannot parse",
        ),
        ("columns: [{name: a, dtype: Int64}]\nseverities: {bogus: error}", "unknown anomaly kind"),
        ("columns: [{name: a, dtype: Int64}]\nseverities: {null_rate: fatal}", "must be one of"),
    ],
)
def test_malformed_schema_yaml(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Schema.from_yaml(text)


def test_python_expression_checks_cannot_be_saved(schema: Schema) -> None:
    s = schema.with_check("py", pl.col("distance") > 0)
    with pytest.raises(InvalidInputError, match="cannot be saved"):
        s.to_yaml()


def test_later_month_gives_warnings_not_errors(flights: pl.DataFrame, schema: Schema) -> None:
    july = flights.filter(pl.col("month") == 7)
    report = validate(july, schema)
    assert report.ok
    kinds = {(a.kind, a.column) for a in report.anomalies}
    assert ("out_of_range", "temp") in kinds  # July is warmer than anything in Jan-Feb
    assert ("unseen_category", "dest") in kinds
    temp = next(a for a in report.anomalies if a.column == "temp")
    assert temp.count == (july["temp"] > schema.column("temp").max).sum()


def test_wrong_types(jan_feb: pl.DataFrame, schema: Schema) -> None:
    bad = jan_feb.with_columns(pl.col("temp").cast(pl.String), pl.col("distance").cast(pl.Int32))
    report = validate(bad, schema)
    assert not report.ok
    temp = report.for_column("temp")
    assert [(a.kind, a.severity) for a in temp] == [("type_mismatch", "error")]
    assert "String, expected Float64" in temp[0].message
    # A narrower integer is reported but its values are still checked.
    assert [(a.kind, a.severity) for a in report.for_column("distance")] == [
        ("type_mismatch", "warning")
    ]


def test_dropped_and_extra_columns(jan_feb: pl.DataFrame, schema: Schema) -> None:
    report = validate(jan_feb.drop("dewp").with_columns(extra=pl.lit(1)), schema)
    assert [(a.kind, a.column, a.severity) for a in report.anomalies] == [
        ("missing_column", "dewp", "error"),
        ("extra_column", "extra", "warning"),
    ]


def test_out_of_range_unseen_nulls_and_duplicates(jan_feb: pl.DataFrame, schema: Schema) -> None:
    s = schema.with_column("carrier", nullable=False).with_column("day", unique=True)
    bad = jan_feb.head(100).with_columns(
        temp=pl.when(pl.int_range(pl.len()) < 3).then(999.0).otherwise(pl.col("temp")),
        origin=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("XXX")).otherwise("origin"),
        carrier=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("carrier"),
        pressure=pl.lit(None, dtype=pl.Float64),
    )
    report = validate(bad, s)
    by_kind = {a.kind: a for a in report.anomalies}
    assert by_kind["out_of_range"].count == 3 and "999" in by_kind["out_of_range"].message
    assert by_kind["unseen_category"].examples == ("XXX",)
    assert by_kind["unexpected_nulls"].column == "carrier"
    assert by_kind["null_rate"].column == "pressure"
    assert by_kind["duplicate_key"].column == "day"
    assert not report.ok


def test_nan_is_not_out_of_range(schema: Schema) -> None:
    s = Schema((schema.column("temp"),))
    report = validate(pl.DataFrame({"temp": [20.0, float("nan")]}), s)
    assert report.anomalies == ()


def test_composite_key_and_user_checks(jan_feb: pl.DataFrame, schema: Schema) -> None:
    s = schema.with_key("origin").with_check("short hop", "distance < 100", "warning")
    report = validate(
        jan_feb.head(50),
        s,
        checks=[pl.col("arr_delay") < 1000, Check("no such", "nope > 1")],
    )
    kinds = [(a.kind, a.severity) for a in report.anomalies]
    assert ("duplicate_key", "error") in kinds
    failed = [a for a in report.anomalies if a.kind == "check_failed"]
    messages = " | ".join(a.message for a in failed)
    assert "'short hop' failed" in messages
    assert "'no such' could not run: column(s) ['nope'] are missing" in messages
    assert "check 1" not in messages  # arr_delay < 1000 holds on these rows


def test_a_check_that_errors_is_reported_not_raised(jan_feb: pl.DataFrame, schema: Schema) -> None:
    report = validate(jan_feb.head(10), schema, checks=[Check("bad", pl.col("carrier") + 1 > 0)])
    bad = [a for a in report.anomalies if a.kind == "check_failed"]
    assert len(bad) == 1 and "could not run on this table" in bad[0].message


def test_skew_against_training_profile(
    jan_feb: pl.DataFrame, jul_aug: pl.DataFrame, schema: Schema
) -> None:
    training = profile(jan_feb)
    report = validate(jul_aug, schema, reference=training)
    skewed = {a.column for a in report.anomalies if a.kind == "skew"}
    assert {"temp", "dewp"} <= skewed
    assert not {"hour", "origin", "carrier"} & skewed
    with pytest.raises(InvalidInputError, match="validation found"):
        validate(jul_aug.drop("temp"), schema).raise_for_errors()


def test_validate_rejects_non_schema(jan_feb: pl.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="loopml Schema"):
        validate(jan_feb, {"columns": []})  # type: ignore[arg-type]
