"""The MLflow side of bench/server: fill an MLflow SQLite store with the benchmark's runs.

Run with a Python that has MLflow (see bench/tracking/README.md): ``python mlflow_side.py
SPEC.json DB_PATH``. Standard library + mlflow only; prints one JSON line with the
experiment id and the setup time.

The runs go in through MLflow's own store (``SqlAlchemyStore``: it creates the schema and
the experiment) and its ORM rows, a thousand runs a transaction: the same rows
``create_run`` + ``log_batch`` + ``set_terminated`` write, without a transaction each.
Creating 10,000 runs one client call at a time took over 25 minutes on this machine,
and only the search is timed.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracking"))

from workload import SEARCH_EXPERIMENT, Spec

BATCH = 1000


def main(argv: list[str]) -> int:
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    spec = Spec.load(Path(argv[0]))
    db = Path(argv[1])
    artifacts = db.parent / "mlflow-artifacts"
    store = SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
    experiment_id = store.create_experiment(SEARCH_EXPERIMENT, artifact_location=str(artifacts))
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for start in range(0, len(spec.runs), BATCH):
        rows: list[object] = []
        for i, r in enumerate(spec.runs[start : start + BATCH]):
            run_id = uuid.uuid4().hex
            ts = now + start + i  # distinct start times, newest last, as one-by-one creation
            rows.append(
                SqlRun(
                    run_uuid=run_id,
                    name=r.name,
                    experiment_id=int(experiment_id),
                    user_id="bench",
                    status="FINISHED",
                    start_time=ts,
                    end_time=ts + 1,
                    source_type="LOCAL",
                    source_name="",
                    entry_point_name="",
                    source_version="",
                    lifecycle_stage="active",
                    artifact_uri=str(artifacts / run_id / "artifacts"),
                )
            )
            rows.append(SqlTag(run_uuid=run_id, key="mlflow.runName", value=r.name))
            rows.append(SqlTag(run_uuid=run_id, key="mlflow.user", value="bench"))
            rows += [SqlParam(run_uuid=run_id, key=k, value=v) for k, v in r.params.items()]
            for k, v in r.metrics.items():
                point = {"key": k, "value": v, "timestamp": ts, "step": 0, "is_nan": False}
                rows.append(SqlMetric(run_uuid=run_id, **point))
                rows.append(SqlLatestMetric(run_uuid=run_id, **point))
        with store.ManagedSessionMaker() as session:
            session.add_all(rows)
    setup_s = time.perf_counter() - t0
    with store.ManagedSessionMaker() as session:
        made = session.query(SqlRun).filter(SqlRun.experiment_id == int(experiment_id)).count()
    if made != len(spec.runs):
        sys.exit(f"MLflow's store holds {made} runs, not {len(spec.runs)}")
    print(json.dumps({"experiment_id": experiment_id, "setup_s": setup_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
