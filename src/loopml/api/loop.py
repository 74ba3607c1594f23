"""``lm.Loop`` and its triggers on the configured workspace.

loop = lm.Loop(model="delay-model", pipeline=training, gate=gate,
               triggers=[lm.monitoring.DriftAbove(0.2), lm.monitoring.NewLabels(min_rows=10_000)],
               canary=0.1, cooldown="1d")
loop.tick()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopml.api.fluent import workspace as _workspace
from loopml.pipelines.definition import Pipeline
from loopml.registry.gates import Gate
from loopml.retraining import loop as _loop
from loopml.retraining.records import Decision as Decision
from loopml.retraining.triggers import DriftAbove as DriftAbove
from loopml.retraining.triggers import Every as Every
from loopml.retraining.triggers import Evidence as Evidence
from loopml.retraining.triggers import NewLabels as NewLabels
from loopml.retraining.triggers import PerformanceBelow as PerformanceBelow
from loopml.retraining.triggers import Trigger as Trigger
from loopml.store.workspace import Workspace


class Loop(_loop.Loop):
    """A retraining loop for ``model`` on the configured workspace (or ``workspace=``).

    Keyword options as :class:`loopml.retraining.loop.Loop`: ``canary`` (share of requests
    for the candidate), ``cooldown``, ``window``, ``gate_window``, ``metric``,
    ``tolerance``, ``min_live_labels``, ``pipeline_params``, ``name``, ``clock``."""

    def __init__(
        self,
        model: str,
        pipeline: Pipeline,
        gate: Gate | None = None,
        triggers: Sequence[Trigger] = (),
        *,
        workspace: Workspace | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            workspace if workspace is not None else _workspace(),
            model,
            pipeline,
            gate,
            triggers,
            **options,
        )
