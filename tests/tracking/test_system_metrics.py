"""System metrics: a run samples the machine in a thread into its metric writer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import loopml as lm
from loopml.core.errors import ConfigError, InvalidInputError
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.system_metrics import SystemMetricsSampler
from loopml.tracking.tracker import Tracker

INTERVAL = 0.1
CORE = (
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/process_memory_rss_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
)
DISK = ("system/disk_read_megabytes", "system/disk_write_megabytes")


@pytest.fixture
def tracker(workspace: Workspace) -> Iterator[Tracker]:
    t = Tracker(workspace)
    yield t
    t.close()


def _sampler(run: ActiveRun) -> SystemMetricsSampler:
    sampler = run._sampler
    assert sampler is not None
    return sampler


def _wait_for_samples(sampler: SystemMetricsSampler, n: int) -> None:
    deadline = time.monotonic() + 60
    while sampler.samples < n:
        assert time.monotonic() < deadline, f"only {sampler.samples} samples within 60 s"
        time.sleep(INTERVAL / 2)


def _system_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopml-system-metrics")]


def test_a_run_with_system_metrics_gets_plausible_samples(tracker: Tracker) -> None:
    with tracker.start_run("sys", system_metrics_interval=INTERVAL) as run:
        run.log_metric("loss", 0.5)
        _wait_for_samples(_sampler(run), 3)
    got = tracker.get_run(run.id)
    assert got.metrics["loss"] == 0.5
    expected = CORE + (DISK if psutil.disk_io_counters() is not None else ())
    histories = {key: tracker.metric_history(run.id, key) for key in expected}
    for key, h in histories.items():
        assert len(h.values) >= 2, key
        assert h.steps.tolist() == list(range(len(h.steps))), key
    total_mb = psutil.virtual_memory().total / 1e6
    cpu = histories["system/cpu_utilization_percentage"].values
    assert ((cpu >= 0) & (cpu <= 100)).all()
    used = histories["system/system_memory_usage_megabytes"].values
    assert ((used > 0) & (used <= total_mb)).all()
    pct = histories["system/system_memory_usage_percentage"].values
    assert ((pct > 0) & (pct <= 100)).all()
    rss = histories["system/process_memory_rss_megabytes"].values
    assert ((rss > 1) & (rss <= total_mb)).all()  # this Python process holds more than 1 MB
    disk_pct = histories["system/disk_usage_percentage"].values
    assert ((disk_pct > 0) & (disk_pct <= 100)).all()
    disk_total_mb = psutil.disk_usage("/").total / 1e6
    for key in ("system/disk_usage_megabytes", "system/disk_available_megabytes"):
        v = histories[key].values
        assert ((v >= 0) & (v <= disk_total_mb)).all(), key
    for key in ("system/network_receive_megabytes", *DISK):
        if key in histories:
            v = histories[key].values
            assert (v >= 0).all() and (v[1:] >= v[:-1]).all(), key  # counted from the start


def test_a_run_without_system_metrics_gets_none(tracker: Tracker) -> None:
    with tracker.start_run("sys") as run:
        run.log_metric("loss", 0.5)
        assert run._sampler is None
    assert not any(k.startswith("system/") for k in tracker.get_run(run.id).metrics)


def test_the_thread_is_gone_and_nothing_is_written_after_the_run_ends(tracker: Tracker) -> None:
    before = set(_system_threads())
    run = tracker.start_run("sys", system_metrics_interval=INTERVAL)
    sampler = _sampler(run)
    assert sampler.alive
    _wait_for_samples(sampler, 2)
    run.end()
    assert not sampler.alive
    assert set(_system_threads()) == before
    key = "system/cpu_utilization_percentage"
    count = len(tracker.metric_history(run.id, key).values)
    assert count == sampler.samples
    time.sleep(5 * INTERVAL)  # several intervals in which a leftover thread would write
    sampler.sample()  # a late sample after stop is dropped, not written
    assert len(tracker.metric_history(run.id, key).values) == count


class _Flaky:
    """A probe that fails every other reading, as a broken sensor would."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self) -> dict[str, float]:
        self.calls += 1
        if self.calls % 2:
            raise OSError("sensor unavailable")
        return {"cpu_utilization_percentage": 1.0, "bad": float("nan")}


def test_a_failing_sample_never_breaks_the_run(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="loopml.tracking.system_metrics")
    with tracker.start_run("sys") as run:
        probe = _Flaky()
        sampler = SystemMetricsSampler(tracker.writer, run.id, INTERVAL, probe=probe).start()
        _wait_for_samples(sampler, 2)
        run.log_metric("loss", 0.1)
        sampler.stop()
    assert not sampler.alive
    got = tracker.get_run(run.id)
    assert got.status == "finished"
    assert got.metrics["loss"] == 0.1
    assert got.metrics["system/cpu_utilization_percentage"] == 1.0
    assert "system/bad" not in got.metrics  # a non-finite reading is skipped, not stored
    assert probe.calls >= 3
    warnings = [r for r in caplog.records if "sample failed" in r.getMessage()]
    assert len(warnings) == 1  # once per run, not once per interval


def test_a_probe_that_always_fails_leaves_the_run_working(tracker: Tracker) -> None:
    class Broken:
        def read(self) -> dict[str, float]:
            raise RuntimeError("no /proc here")

    with tracker.start_run("sys") as run:
        sampler = SystemMetricsSampler(tracker.writer, run.id, INTERVAL, probe=Broken()).start()
        run.log_metric("loss", 0.3)
    sampler.stop()
    assert tracker.get_run(run.id).metrics == {"loss": 0.3}


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True, 0.001])
def test_a_bad_interval_is_refused_before_a_run_is_made(tracker: Tracker, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="interval"):
        tracker.start_run("sys", system_metrics_interval=bad)  # type: ignore[arg-type]
    assert tracker.search_runs() == []


def test_starting_twice_or_after_the_end_is_refused(tracker: Tracker) -> None:
    run = tracker.start_run("sys", system_metrics_interval=1.0)
    with pytest.raises(lm.ConflictError, match="already"):
        run.start_system_metrics(1.0)
    run.end()
    with pytest.raises(lm.ConflictError, match="ended"):
        run.start_system_metrics(1.0)


def test_lm_start_run_turns_it_on_by_argument_or_environment(
    loopml_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with lm.start_run("sys", system_metrics=True, system_metrics_interval=INTERVAL) as run:
        _wait_for_samples(_sampler(run), 2)
    assert "system/cpu_utilization_percentage" in lm.get_run(run.id).metrics

    monkeypatch.setenv("LOOPML_SYSTEM_METRICS", "1")
    monkeypatch.setenv("LOOPML_SYSTEM_METRICS_INTERVAL", str(INTERVAL))
    with lm.start_run("sys") as on:
        _wait_for_samples(_sampler(on), 2)
    assert "system/system_memory_usage_megabytes" in lm.get_run(on.id).metrics
    with lm.start_run("sys", system_metrics=False) as off:  # the argument wins
        assert off._sampler is None

    monkeypatch.setenv("LOOPML_SYSTEM_METRICS", "0")
    with lm.start_run("sys") as default_off:
        assert default_off._sampler is None


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LOOPML_SYSTEM_METRICS", "maybe"),
        ("LOOPML_SYSTEM_METRICS_INTERVAL", "soon"),
        ("LOOPML_SYSTEM_METRICS_INTERVAL", "0"),
    ],
)
def test_a_bad_environment_value_is_a_clear_config_error(
    loopml_home: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv("LOOPML_SYSTEM_METRICS", "1")
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        lm.start_run("sys")
    assert lm.search_runs() == []
