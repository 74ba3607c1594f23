"""The MLflow side of bench/server: fill an MLflow SQLite store with the benchmark's runs.

Run with a Python that has MLflow (see bench/tracking/README.md): ``python mlflow_side.py
SPEC.json DB_PATH``. Standard library + mlflow only; prints one JSON line with the
experiment id and the setup time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracking"))

from workload import SEARCH_EXPERIMENT, Spec


def main(argv: list[str]) -> int:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    spec = Spec.load(Path(argv[0]))
    db = Path(argv[1])
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = client.create_experiment(
        SEARCH_EXPERIMENT, artifact_location=str(db.parent / "mlflow-artifacts")
    )
    t0 = time.perf_counter()
    for r in spec.runs:
        run_id = client.create_run(experiment_id, run_name=r.name).info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in r.metrics.items()],
            params=[Param(k, v) for k, v in r.params.items()],
        )
        client.set_terminated(run_id)
    print(json.dumps({"experiment_id": experiment_id, "setup_s": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
