"""What the machine does while a run runs: CPU, memory, disk and network I/O, GPUs.

A daemon thread samples every ``interval`` seconds and appends the readings to the run's
batched metric writer, the same queue ``log_metric`` uses, so sampling never waits on the
database and never slows the training loop's own logging. Names follow MLflow's
(``system/cpu_utilization_percentage``, ...), so dashboards built for one read the other.
Disk usage is that of the root file system; disk and network I/O count from the start of
the run.

GPUs are read through NVIDIA's NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``)
when it is installed and finds a device; otherwise there are no GPU metrics.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from loopml.core.errors import InvalidInputError

if TYPE_CHECKING:
    from loopml.tracking.metric_writer import Point


class PointSink(Protocol):
    """Where samples go: the run's metric writer, or a remote run's sending queue."""

    def extend(self, points: list[Point]) -> None: ...


log = logging.getLogger(__name__)

PREFIX = "system/"
DEFAULT_INTERVAL_S = 10.0
MIN_INTERVAL_S = 0.05
_MB = 1e6
# A thread stuck in a library call (a hung NVML driver) must not hold up ending the run.
_JOIN_TIMEOUT_S = 5.0


def check_interval(interval: object) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise InvalidInputError(
            f"the system metrics interval is a number of seconds, not {interval!r:.60}"
        )
    value = float(interval)
    if not math.isfinite(value) or value < MIN_INTERVAL_S:
        raise InvalidInputError(
            f"the system metrics interval must be at least {MIN_INTERVAL_S} s, not {interval!r}"
        )
    return value


class Probe:
    """One reading of the machine per call, as ``{name: value}`` without the prefix."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        # cpu_percent measures since its previous call; this first call sets the origin.
        psutil.cpu_percent(interval=None)
        self._disk0 = _disk_counters(psutil)
        self._net0 = _net_counters(psutil)
        self._gpus = _Gpus.open()

    def read(self) -> dict[str, float]:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        out = {
            "cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
            "system_memory_usage_megabytes": memory.used / _MB,
            "system_memory_usage_percentage": float(memory.percent),
            "process_memory_rss_megabytes": self._process.memory_info().rss / _MB,
        }
        usage = psutil.disk_usage(os.path.abspath(os.sep))
        out["disk_usage_percentage"] = float(usage.percent)
        out["disk_usage_megabytes"] = usage.used / _MB
        out["disk_available_megabytes"] = usage.free / _MB
        disk = _disk_counters(psutil)
        if disk is not None and self._disk0 is not None:
            out["disk_read_megabytes"] = max(disk[0] - self._disk0[0], 0) / _MB
            out["disk_write_megabytes"] = max(disk[1] - self._disk0[1], 0) / _MB
        net = _net_counters(psutil)
        if net is not None and self._net0 is not None:
            out["network_receive_megabytes"] = max(net[0] - self._net0[0], 0) / _MB
            out["network_transmit_megabytes"] = max(net[1] - self._net0[1], 0) / _MB
        if self._gpus is not None:
            out.update(self._gpus.read())
        return out

    def close(self) -> None:
        if self._gpus is not None:
            self._gpus.close()


def _disk_counters(psutil: Any) -> tuple[int, int] | None:
    # None (not an error) on machines that expose no disks, such as some containers.
    c = psutil.disk_io_counters()
    return None if c is None else (c.read_bytes, c.write_bytes)


def _net_counters(psutil: Any) -> tuple[int, int] | None:
    c = psutil.net_io_counters()
    return None if c is None else (c.bytes_recv, c.bytes_sent)


class _Gpus:
    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls) -> _Gpus | None:
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:  # NVML raises its own error types, driver or no driver
            log.debug("no GPU metrics: %s", exc)
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, handle in enumerate(self._handles):
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            out[f"gpu_{i}_utilization_percentage"] = float(rates.gpu)
            out[f"gpu_{i}_memory_usage_megabytes"] = memory.used / _MB
            if memory.total:
                out[f"gpu_{i}_memory_usage_percentage"] = 100.0 * memory.used / memory.total
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("NVML shutdown failed: %s", exc)


class SystemMetricsSampler:
    """Samples into ``writer`` for ``run_id`` until :meth:`stop`.

    Sample ``n`` is logged at step ``n`` of every metric. A reading that fails is logged
    as a warning once and skipped; the run goes on. After :meth:`stop` returns nothing
    more is appended, so the run can flush and end.
    """

    def __init__(
        self,
        writer: PointSink,
        run_id: str,
        interval: float = DEFAULT_INTERVAL_S,
        *,
        probe: Any = None,
    ) -> None:
        self._writer = writer
        self._run_id = run_id
        self.interval = check_interval(interval)
        self._probe = probe
        self._stop = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self._step = 0
        self._warned = False
        self.samples = 0
        self._thread = threading.Thread(
            target=self._loop, name=f"loopml-system-metrics-{run_id[:8]}", daemon=True
        )

    def start(self) -> SystemMetricsSampler:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        try:
            if self._probe is None:
                self._probe = Probe()
        except Exception as exc:
            log.warning("system metrics are off for run %s: %s", self._run_id, exc)
            return
        try:
            while not self._stop.wait(self.interval):
                self.sample()
        finally:
            close = getattr(self._probe, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.debug("closing the system metrics probe failed: %s", exc)

    def sample(self) -> None:
        """Take one reading now and queue it."""
        try:
            reading = self._probe.read()
            now = time.time()
            points = [
                (self._run_id, PREFIX + name, self._step, now, float(value))
                for name, value in reading.items()
                if math.isfinite(float(value))
            ]
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning("system metrics sample failed for run %s: %s", self._run_id, exc)
            return
        with self._lock:
            if self._stopped:
                return
            self._writer.extend(points)
            self._step += 1
            self.samples += 1

    def stop(self) -> None:
        """Stop sampling; after this returns no point of this sampler is queued."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT_S)
        with self._lock:
            self._stopped = True
