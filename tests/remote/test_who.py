"""Who did what, locally: runs, registrations, promotions and dataset versions made through
the Python API record the OS user; the wire models and pages show it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sklearn.linear_model import LogisticRegression

import loopml as lm
from loopml.api import config
from loopml.server.wire import AliasEventOut, DatasetVersionOut, ModelVersionOut, RunOut


def test_local_writes_record_the_os_user(loopml_home: Path) -> None:
    me = config.os_user()
    assert me
    table = pl.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    ds = lm.datasets.add("tiny", table)
    with lm.start_run("who") as run:
        pass
    model = LogisticRegression().fit(table.select("x").to_pandas(), table["y"].to_numpy())
    mv = lm.models.register("who-model", model, table.select("x"), run=run, datasets=[ds])
    lm.models.promote("who-model", mv.version, "champion")
    assert lm.get_run(run.id).created_by == me
    assert lm.datasets.get("tiny").created_by == me
    assert lm.models.get("who-model@champion").created_by == me
    (event,) = lm.models.history("who-model")
    assert event.created_by == me
    # The same names reach the HTTP API's wire models.
    assert RunOut.of(lm.get_run(run.id)).created_by == me
    assert DatasetVersionOut.of(lm.datasets.get("tiny")).created_by == me
    assert ModelVersionOut.of(mv).created_by == me
    assert AliasEventOut.of(event).created_by == me
