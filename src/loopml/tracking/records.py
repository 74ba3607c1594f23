"""Read-only views of recorded runs and metric histories."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.clock import format_ts
from loopml.core.display import Summarized, Summary

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class RunPage:
    """One page of a search: the runs at ``offset``, and how many matched in all."""

    runs: list[Run]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, repr=False)
class Run(Summarized):
    id: str
    experiment: str
    name: str
    status: str
    start_time: float
    end_time: float | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    environment_digest: str | None = None
    error: str | None = None
    created_by: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time

    def _summary(self) -> Summary:
        return Summary(
            f"Run {self.id[:12]}",
            [
                ("experiment", self.experiment),
                ("name", self.name),
                ("status", self.status),
                ("started", format_ts(self.start_time)),
                *sorted(self.metrics.items())[:8],
            ],
        )


class RunList(Summarized, list[Run]):
    """A list of runs that also converts to a DataFrame, one row a run."""

    def _summary(self) -> Summary:
        metrics = sorted({k for r in self for k in r.metrics})[:6]
        return Summary(
            f"RunList of {len(self)} run{'' if len(self) == 1 else 's'}",
            columns=["run", "experiment", "name", "status", *metrics],
            rows=[
                [r.id[:12], r.experiment, r.name, r.status, *(r.metrics.get(m) for m in metrics)]
                for r in self
            ],
        )

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        columns: dict[str, Any] = {
            "run_id": [r.id for r in self],
            "experiment": [r.experiment for r in self],
            "name": [r.name for r in self],
            "status": [r.status for r in self],
            "start_time": pd.to_datetime([r.start_time for r in self], unit="s", utc=True),
            "end_time": pd.to_datetime(
                [float("nan") if r.end_time is None else r.end_time for r in self],
                unit="s",
                utc=True,
            ),
        }
        for prefix, attr in (("metrics", "metrics"), ("params", "params"), ("tags", "tags")):
            keys = sorted({k for r in self for k in getattr(r, attr)})
            for key in keys:
                columns[f"{prefix}.{key}"] = [getattr(r, attr).get(key) for r in self]
        return pd.DataFrame(columns)


@dataclass(frozen=True)
class MetricHistory:
    """One metric's series. When downsampled, each point stands for a bucket of steps:
    ``values`` holds the bucket means and ``min``/``max`` its envelope."""

    run_id: str
    key: str
    steps: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    total_points: int = 0

    @property
    def downsampled(self) -> bool:
        return self.min is not None

    def __len__(self) -> int:
        return len(self.steps)

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        data: dict[str, Any] = {
            "step": self.steps,
            "timestamp": self.timestamps,
            "value": self.values,
        }
        if self.min is not None and self.max is not None:
            data["min"] = self.min
            data["max"] = self.max
        return pd.DataFrame(data)
