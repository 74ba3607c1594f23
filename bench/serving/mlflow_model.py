"""The MLflow side's model wrapper: what an MLflow user writes to serve the demo model.

HistGradientBoosting with ``categorical_features="from_dtype"`` needs pandas ``category``
columns, which JSON payloads cannot carry, so the wrapper converts them (loopml does the
same from the model's signature). Loaded by ``mlflow models serve`` from ``code_paths``.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow.pyfunc

CATEGORICAL = ("carrier", "origin", "dest")


class DelayModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as f:
            self.model = pickle.load(f)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        frame = model_input.copy()
        for col in CATEGORICAL:
            frame[col] = frame[col].astype("category")
        return self.model.predict(frame)
