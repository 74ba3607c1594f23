"""System metrics through the fluent API, locally and against a live ``loopml server``:
the samples are of this machine and reach the workspace like any other points."""

from __future__ import annotations

import time

import pytest

import loopml as lm
from tests.remote.conftest import Target

INTERVAL = 0.1
KEYS = ("system/cpu_utilization_percentage", "system/process_memory_rss_megabytes")


def test_a_run_samples_the_machine_into_the_workspace(api: Target) -> None:
    with lm.start_run("sys", system_metrics=True, system_metrics_interval=INTERVAL) as run:
        sampler = run._sampler
        assert sampler is not None
        deadline = time.monotonic() + 60
        while sampler.samples < 2:
            assert time.monotonic() < deadline, "fewer than 2 samples within 60 s"
            time.sleep(INTERVAL / 2)
        run.log_metric("loss", 0.25)
    assert not sampler.alive
    got = lm.get_run(run.id)
    assert got.status == "finished" and got.metrics["loss"] == 0.25
    for key in KEYS:
        history = lm.metric_history(run.id, key)
        assert len(history.values) == sampler.samples >= 2, key
        assert (history.values >= 0).all()
    with pytest.raises(lm.ConflictError, match="ended"):
        run.start_system_metrics(1.0)


def test_a_bad_interval_is_refused_before_a_run_is_made(api: Target) -> None:
    with pytest.raises(lm.InvalidInputError, match="interval"):
        lm.start_run("sys-bad", system_metrics=True, system_metrics_interval=0)
    assert lm.search_runs(experiment="sys-bad") == []
