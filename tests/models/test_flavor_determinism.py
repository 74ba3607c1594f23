"""Byte-determinism, per flavor: the same fitted model saves to the same digest, twice
and across two fits with fixed seeds; per-save facts stay out of the hashed bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from loopml.registry import flavors
from loopml.registry.artifact import METADATA_FILE, save_model
from loopml.store.workspace import Workspace


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:300, :8].astype("float32"), y.to_numpy()[:300]


def _sklearn(X: pd.DataFrame, y: np.ndarray) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)


def _xgboost(X: pd.DataFrame, y: np.ndarray) -> Any:
    import xgboost

    return xgboost.XGBClassifier(n_estimators=5, max_depth=3, random_state=0, n_jobs=1).fit(X, y)


def _lightgbm(X: pd.DataFrame, y: np.ndarray) -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(
        n_estimators=5, random_state=0, n_jobs=1, deterministic=True, verbose=-1
    ).fit(X, y)


def _onnx(X: pd.DataFrame, y: np.ndarray) -> Any:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    array = X.to_numpy()  # one tensor input
    fitted = LogisticRegression(max_iter=500).fit(array, y)
    return to_onnx(fitted, array[:1], options={id(fitted): {"zipmap": False}})


def _torch(X: pd.DataFrame, y: np.ndarray) -> Any:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    inputs = torch.from_numpy(X.to_numpy().copy())
    target = torch.from_numpy(y.astype("float32")).reshape(-1, 1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(inputs), target).backward()
        opt.step()
    return net


MAKERS: dict[str, Callable[[pd.DataFrame, np.ndarray], Any]] = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "onnx": _onnx,
    "torch": _torch,
}


@pytest.mark.parametrize("flavor", sorted(MAKERS))
def test_save_then_save_gives_the_same_bytes(
    workspace: Workspace, data: tuple[pd.DataFrame, np.ndarray], flavor: str
) -> None:
    X, y = data
    sample = X.to_numpy() if flavor in ("torch", "onnx") else X
    model = MAKERS[flavor](X, y)
    first = save_model(workspace.artifacts, model, sample)
    again = save_model(workspace.artifacts, model, sample)
    assert first.metadata.flavor == flavor
    assert again.digest == first.digest  # save -> save
    # A second fit with the same seeds is the same model, to the byte.
    refit = save_model(workspace.artifacts, MAKERS[flavor](X, y), sample)
    assert refit.digest == first.digest
    # When it was saved is a fact of the save, kept out of the hashed manifest.
    tree = workspace.artifacts.get_tree(first.digest)
    manifest = next(e for e in tree.entries if e.path == METADATA_FILE)
    assert "created_at" not in yaml.safe_load(workspace.artifacts.get_bytes(manifest.digest))
    # Each flavor says where its library's format stops being deterministic.
    note = flavors.get(flavor).determinism  # type: ignore[attr-defined]
    assert isinstance(note, str) and note


def test_an_unfixed_seed_gives_other_bytes(
    workspace: Workspace, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = data
    digests = {
        save_model(workspace.artifacts, RandomForestClassifier(n_estimators=5).fit(X, y), X).digest
        for _ in range(3)
    }
    assert len(digests) > 1  # the check above could tell a nondeterministic model apart
