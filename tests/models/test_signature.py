"""Signatures are inferred from the training data and enforced with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml

from loopml.core.errors import InvalidInputError
from loopml.demo.flights import FEATURES
from loopml.registry.artifact import METADATA_FILE, load_model, save_model
from loopml.registry.signature import ModelEnvironmentWarning, check_versions, infer_inputs
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights


@pytest.fixture
def loaded(workspace: Workspace, flights: Flights, hgb_model: Any) -> Any:
    return load_model(
        workspace.artifacts, save_model(workspace.artifacts, hgb_model, flights.X).digest
    )


def test_inferred_from_training_data(loaded: Any) -> None:
    sig = loaded.signature
    assert sig.columns == FEATURES
    assert sig.column("distance").type == "int64"
    assert sig.column("temp").type == "float64" and sig.column("temp").nullable
    carrier = sig.column("carrier")
    assert carrier.type == "category" and "UA" in (carrier.categories or ())
    assert sig.output.task == "classification" and sig.output.classes == (0, 1)
    assert loaded.metadata.packages["scikit-learn"]


def test_missing_column_names_it(loaded: Any, flights: Flights) -> None:
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) \['temp', 'dest'\]"):
        loaded.predict(flights.eval.drop("temp", "dest"))


def test_wrong_dtype_names_column_and_types(loaded: Any, flights: Flights) -> None:
    bad = flights.eval.with_columns(pl.col("distance").cast(pl.String))
    with pytest.raises(InvalidInputError, match=r"'distance' is string, the model expects int64"):
        loaded.predict(bad)


def test_lossy_cast_is_refused_but_lossless_cast_is_fine(loaded: Any, flights: Flights) -> None:
    as_float = flights.eval.with_columns(pl.col("distance").cast(pl.Float64))
    assert (loaded.predict(as_float) == loaded.predict(flights.eval)).all()
    fractional = as_float.with_columns(pl.col("distance") + 0.5)
    with pytest.raises(InvalidInputError, match=r"'distance'.*without losing values"):
        loaded.predict(fractional)


def test_extra_columns_and_column_order_do_not_matter(loaded: Any, flights: Flights) -> None:
    shuffled = flights.eval.select(list(reversed(flights.eval.columns)))
    assert (loaded.predict(shuffled) == loaded.predict(flights.eval)).all()


def test_unseen_category_is_treated_as_missing(loaded: Any, flights: Flights) -> None:
    odd = flights.eval.head(5).with_columns(pl.lit("ZZ").alias("carrier"))
    assert len(loaded.predict(odd)) == 5


def test_non_table_input_is_refused(loaded: Any) -> None:
    with pytest.raises(InvalidInputError, match="pandas or polars DataFrame"):
        loaded.predict([[1, 2, 3]])
    import numpy as np

    with pytest.raises(InvalidInputError, match="NumPy array but the model was trained on a table"):
        loaded.predict(np.zeros((2, len(FEATURES))))


def test_unsupported_column_type() -> None:
    with pytest.raises(InvalidInputError, match="not supported"):
        infer_inputs(pa.table({"a": pa.array([[1], [2]])}))


def test_version_drift_warns_on_load(
    workspace: Workspace, flights: Flights, hgb_model: Any, tmp_path: Path
) -> None:
    saved = save_model(workspace.artifacts, hgb_model, flights.X)
    tree_dir = tmp_path / "tree"
    workspace.artifacts.get_tree_to(saved.digest, tree_dir)
    meta = yaml.safe_load((tree_dir / METADATA_FILE).read_text())
    meta["packages"]["scikit-learn"] = "0.1.0"
    (tree_dir / METADATA_FILE).write_text(yaml.safe_dump(meta))
    digest = workspace.artifacts.put_tree(tree_dir).digest
    with pytest.warns(ModelEnvironmentWarning, match=r"scikit-learn 0\.1\.0"):
        load_model(workspace.artifacts, digest)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(workspace.artifacts, saved.digest)  # same versions: silent


def test_check_versions_ignores_python_patch_level() -> None:
    import sys

    major_minor = ".".join(map(str, sys.version_info[:2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_versions({"python": f"{major_minor}.999"}, (), what="m") == []
    with pytest.warns(ModelEnvironmentWarning):
        check_versions({"python": "2.7.18"}, (), what="m")
