"""PyTorch modules (optional extra ``loopml[torch]``), stored with ``torch.export``.

An exported program is a graph plus weights, loaded without unpickling arbitrary objects.
Exporting needs an example batch, which comes from the training data the signature is
inferred from; the batch dimension is exported as dynamic. The module takes one float32
matrix of the signature's columns, in order, and its output is the prediction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import ConfigError, InvalidInputError
from loopml.registry.flavors.base import Description, ModelInput, module_of

FILE = "model.pt2"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "PyTorch is not installed; install the extra: pip install 'loopml[torch]'"
        ) from None
    return torch


class TorchFlavor:
    name: str = "torch"
    packages: tuple[str, ...] = ("torch",)
    determinism: str = (
        "torch.export archive: the same bytes for the same program and torch version; "
        "initial weights depend on torch.manual_seed"
    )

    def handles(self, model: object) -> bool:
        return module_of(model) == "torch" or any(
            c.__module__.startswith("torch.nn") for c in type(model).__mro__
        )

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        torch = _torch()
        if example is None or example.num_rows < 2:
            raise InvalidInputError(
                "saving a PyTorch model needs example input with at least 2 rows (pass X=...) "
                "to export its graph"
            )
        directory.mkdir(parents=True, exist_ok=True)
        sample = torch.from_numpy(example.numpy(np.float32))
        batch = torch.export.Dim("batch")
        model.eval()
        try:
            program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
        except Exception as exc:  # torch.export raises many error types for untraceable code
            raise InvalidInputError(f"torch.export cannot export this module: {exc}") from None
        torch.export.save(program, str(directory / FILE))
        return {"file": FILE, "class": type(model).__qualname__}

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        torch = _torch()
        return torch.export.load(str(directory / str(info["file"]))).module()

    def describe(self, model: Any) -> Description:
        params = (
            sum(int(p.numel()) for p in model.parameters()) if hasattr(model, "parameters") else 0
        )
        return Description("other", None, {"class": type(model).__qualname__, "parameters": params})

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        torch = _torch()
        # Dropout and batch-norm must be in inference mode; an exported module already is
        # and refuses eval().
        with contextlib.suppress(NotImplementedError, AttributeError):
            model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(data.numpy(np.float32)))
        arr = out.detach().cpu().numpy()
        return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        return None
