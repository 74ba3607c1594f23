"""`import loopml` must stay light: heavy and optional dependencies load only when used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "ray",
    "torch",
    "xgboost",
    "lightgbm",
    "onnxruntime",
    "s3fs",
    "psycopg",
    "sklearn",
    "mlflow",
    "plotly",
    "fastapi",
    "grpc",
]


def test_import_loopml_loads_no_heavy_dependency() -> None:
    code = (
        f"import sys, json, loopml; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
