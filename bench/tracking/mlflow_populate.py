"""Put the search benchmark's runs into an MLflow SQLite store through the store itself.

    python mlflow_populate.py SPEC.json DB_PATH

Runs under a Python that has MLflow. MLflow's client creates the database (its own schema
migrations) and the experiment; the runs then go in as rows of MLflow's own tables in one
SQLite transaction, because creating 10,000 runs through the client takes MLflow most of
an hour on this machine. Not timed: only searching them is. The client script checks that
MLflow's search returns exactly the expected runs, so the rows are what MLflow reads.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow import MlflowClient
from workload import SEARCH_EXPERIMENT, Spec


def main(argv: list[str]) -> int:
    spec = Spec.load(Path(argv[1]))
    db = Path(argv[2])
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment(SEARCH_EXPERIMENT, artifact_location=str(db.parent / "art"))
    now = int(time.time() * 1000)
    runs, params, tags, metrics = [], [], [], []
    for i, r in enumerate(spec.runs):
        rid = uuid.uuid4().hex
        start = now + i
        runs.append(
            (
                rid,
                r.name,
                "LOCAL",
                "bench",
                "",
                "bench",
                "FINISHED",
                start,
                start + 1,
                "",
                "active",
                f"{db.parent / 'art'}/{rid}/artifacts",
                int(exp),
            )
        )
        params += [(k, v, rid) for k, v in r.params.items()]
        tags += [("mlflow.runName", r.name, rid), ("mlflow.user", "bench", rid)]
        metrics += [(k, v, start, rid, 0, 0) for k, v in r.metrics.items()]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
            "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
            "artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
        conn.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?,?,?,?,?,?)",
            metrics,
        )
        conn.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?,?,?,?,?,?)",
            metrics,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
