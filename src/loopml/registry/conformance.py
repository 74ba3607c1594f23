"""The checks every flavor must pass, in the spirit of scikit-learn's estimator_checks.

``check_flavor(store, model, X)`` saves a fitted model, loads it back from the verified
store, and asserts that the loaded model predicts exactly what the original does, on every
accepted table type, and that it refuses bad input and tampered bytes clearly. Run it on
any new flavor (or on a new model class within one) before trusting it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.core.errors import IntegrityError, InvalidInputError
from loopml.registry.artifact import load_model, save_model, wrap
from loopml.registry.flavors.base import ModelInput
from loopml.store.artifacts import ArtifactStore


def _same(a: np.ndarray, b: np.ndarray, what: str, atol: float) -> None:
    assert a.shape == b.shape, f"{what}: shape {a.shape} after loading, {b.shape} before"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        assert np.allclose(a, b, rtol=0, atol=atol, equal_nan=True), (
            f"{what}: values differ by up to {np.nanmax(np.abs(a - b))}"
        )
    else:
        assert (a == b).all(), f"{what}: {int((a != b).sum())} of {a.size} values differ"


def check_flavor(
    store: ArtifactStore, model: Any, X: Any, *, flavor: str | None = None, atol: float = 0.0
) -> list[str]:
    """Assert the flavor contract for ``model`` fitted on ``X``; return the checks run."""
    done: list[str] = []
    original = wrap(model, X, flavor=flavor)
    fl = original.flavor
    assert fl.handles(model), f"{fl.name} does not claim its own model"
    done.append("detects its model")

    saved = save_model(store, model, X, flavor=flavor)
    assert saved.metadata.flavor == fl.name
    for pkg in fl.packages:
        assert pkg in saved.metadata.packages or pkg == "joblib", f"{pkg} version not recorded"
    done.append("records flavor and package versions")

    loaded = load_model(store, saved.digest)
    assert loaded.signature == original.signature, "signature changed on the round trip"
    assert loaded.input_example is not None and loaded.input_example.num_rows > 0
    done.append("round-trips signature and input example")

    tbl = original.signature.prepare(X)
    n = tbl.num_rows
    before = fl.predict(model, ModelInput(tbl, original.signature), saved.metadata.flavor_info)
    after = loaded.predict(X)
    assert after.ndim in (1, 2) and len(after) == n, f"predict returned shape {after.shape}"
    _same(after, before, "predict", atol)
    done.append("predicts identically after loading")

    if loaded.has_proba:
        proba_before = fl.predict_proba(model, ModelInput(tbl, original.signature), {})
        assert proba_before is not None
        proba_after = loaded.predict_proba(X)
        _same(proba_after, proba_before, "predict_proba", max(atol, 1e-12))
        assert proba_after.shape == (n, len(loaded.classes or ())), "one column per class"
        assert np.allclose(proba_after.sum(axis=1), 1.0, atol=1e-5), "rows must sum to 1"
        done.append("predict_proba identical, one column per class, rows sum to 1")
    else:
        try:
            loaded.predict_proba(X)
        except InvalidInputError:
            done.append("predict_proba refused clearly")
        else:
            raise AssertionError("predict_proba must raise InvalidInputError without probabilities")

    if loaded.signature.input_format == "table":
        import polars as pl

        for other in (tbl, pl.from_arrow(tbl), tbl.to_pandas()):
            _same(loaded.predict(other), after, f"predict on {type(other).__name__}", atol)
        done.append("same predictions from pandas, polars and Arrow")

        first = loaded.signature.columns[0]
        try:
            loaded.predict(tbl.drop_columns([first]))
        except InvalidInputError as exc:
            assert first in str(exc), "the error must name the missing column"
        else:
            raise AssertionError("a missing column must raise InvalidInputError")
        done.append("missing column refused, named")

        spec = loaded.signature.inputs[0]
        wrong = pa.array([True] * n) if spec.type != "bool" else pa.array([1.5] * n)
        bad = tbl.set_column(0, first, wrong)
        try:
            loaded.predict(bad)
        except InvalidInputError as exc:
            assert first in str(exc), "the error must name the mistyped column"
        else:
            raise AssertionError("a wrongly typed column must raise InvalidInputError")
        done.append("wrong dtype refused, named")

    if store.is_local:
        tree = store.get_tree(saved.digest)
        victim = max(tree.entries, key=lambda e: e.size)
        path = store.path_of(victim.digest)
        with open(path, "rb") as f:
            original_bytes = f.read()
        os.chmod(path, 0o644)
        try:
            with open(path, "r+b") as f:
                f.seek(victim.size // 2)
                byte = f.read(1)
                f.seek(victim.size // 2)
                f.write(bytes([byte[0] ^ 0xFF]))
            try:
                load_model(store, saved.digest)
            except IntegrityError:
                done.append("tampered artifact refused on load")
            else:
                raise AssertionError("a tampered model artifact must not load")
        finally:
            with open(path, "wb") as f:
                f.write(original_bytes)
    return done
