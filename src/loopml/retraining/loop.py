"""The retraining loop: one decision per tick, every decision stored with its reasons.

A loop is in one of three phases:

- ``steady``: the triggers look at the window's evidence. One that fires (outside the
  cooldown) retrains through the pipeline on the data before the most recent labelled
  window, registers the candidate and gates it against the champion on that window. A
  candidate that passes becomes the challenger (``canary`` > 0: the server sends that
  share of requests to ``name@challenger``) or the champion at once (no canary).
- ``canary``: once the challenger has answered enough labelled requests, its live metric
  is compared with the champion's predictions on the same requests; it is promoted to
  champion or sent back (the challenger alias returns to the champion).
- ``watch``: once the new champion has answered enough labelled requests, its live metric
  is compared with the version it replaced, scored on the same requests; a champion that
  does worse is rolled back.

Time comes from ``clock`` (or the ``now`` given to :meth:`Loop.tick`), and windows use
the requests' event time, so a replay decides by the time of the data, not the wall.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from loopml.core import clock as wall_clock
from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.data.catalog import Catalog
from loopml.monitor.api import monitor_of
from loopml.monitor.window import WindowReport
from loopml.pipelines.definition import Pipeline
from loopml.pipelines.runner import run_pipeline
from loopml.registry.evaluation import higher_is_better
from loopml.registry.gates import Gate, NoWorseThanChampion
from loopml.registry.model_registry import ModelVersion, Registry, check_model_name
from loopml.registry.promotion import policy, promote
from loopml.retraining import traffic as tr
from loopml.retraining.durations import parse_duration
from loopml.retraining.records import Decision, LoopStore
from loopml.retraining.triggers import Evidence, Trigger, Verdict
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.retraining")

STEADY, CANARY, WATCH = "steady", "canary", "watch"
LABEL = "label"


@dataclass(frozen=True)
class TickResult:
    """What one tick did: ``action`` in a word and the decisions it stored."""

    tick: int
    at: float
    action: str
    decisions: tuple[Decision, ...]
    evidence: Evidence | None = None

    @property
    def reasons(self) -> list[str]:
        return [r for d in self.decisions for r in d.reasons]

    @property
    def why(self) -> str:
        """The reasons behind the tick's last decision, in one line."""
        return "; ".join(self.decisions[-1].reasons) if self.decisions else ""


class Loop:
    """Retrain ``model`` through ``pipeline`` when a trigger fires; gate, canary, promote,
    watch, roll back. See the module docstring for the phases.

    ``pipeline`` returns the trained model, or ``{"model": ..., "data": ...}`` with the
    training table (features and target): then the table is added to the catalog as
    ``<model>-training`` and linked to the version, and gives its signature. If the
    pipeline has an ``until`` parameter it receives the event time (epoch seconds) the
    training data must end before.
    """

    def __init__(
        self,
        workspace: Workspace,
        model: str,
        pipeline: Pipeline,
        gate: Gate | None = None,
        triggers: Sequence[Trigger] = (),
        *,
        canary: float = 0.0,
        cooldown: str | float = "1d",
        window: str | float | None = None,
        gate_window: str | float = "7d",
        metric: str | None = None,
        tolerance: float = 0.0,
        min_live_labels: int = 200,
        pipeline_params: Mapping[str, Any] | None = None,
        alias: str = "champion",
        challenger: str = "challenger",
        name: str | None = None,
        clock: Callable[[], float | datetime] | None = None,
        lease_ttl: float = 60.0,
    ) -> None:
        check_model_name(model)
        if not isinstance(pipeline, Pipeline):
            raise InvalidInputError(
                f"pipeline= takes an @lm.pipeline function, not {type(pipeline).__name__}"
            )
        if gate is not None and not isinstance(gate, Gate):
            raise InvalidInputError(f"gate= takes an lm.models.gate(...), not {type(gate)}")
        for t in triggers:
            if not callable(getattr(t, "check", None)):
                raise InvalidInputError(
                    f"{t!r} is not a trigger; use lm.monitoring.DriftAbove, PerformanceBelow, "
                    "NewLabels or Every"
                )
        if isinstance(canary, bool) or not isinstance(canary, int | float) or not 0 <= canary < 1:
            raise InvalidInputError(
                f"canary must be the share of traffic for the candidate, 0 <= canary < 1 "
                f"(e.g. 0.1), not {canary!r}"
            )
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
            raise InvalidInputError("tolerance must be a number >= 0")
        if not tolerance >= 0 or not math.isfinite(tolerance):
            raise InvalidInputError("tolerance must be a number >= 0")
        if isinstance(min_live_labels, bool) or not isinstance(min_live_labels, int):
            raise InvalidInputError("min_live_labels must be a whole number >= 1")
        if min_live_labels < 1:
            raise InvalidInputError("min_live_labels must be a whole number >= 1")
        if alias == challenger:
            raise InvalidInputError("the champion and challenger aliases must differ")
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, int | float):
            raise InvalidInputError("lease_ttl must be a number of seconds > 0")
        if not (lease_ttl > 0 and math.isfinite(lease_ttl)):
            raise InvalidInputError("lease_ttl must be a number of seconds > 0")
        self.workspace = workspace
        self.model = model
        self.name = name or model
        check_model_name(self.name)
        self.pipeline = pipeline
        self.gate = gate
        self.triggers = tuple(triggers)
        self.canary = float(canary)
        self.cooldown = parse_duration(cooldown, "cooldown")
        self.window = None if window is None else parse_duration(window, "window")
        self.gate_window = parse_duration(gate_window, "gate_window")
        self.metric = metric or _gate_metric(gate)
        higher_is_better(self.metric)
        self.tolerance = float(tolerance)
        self.min_live_labels = min_live_labels
        self.pipeline_params = dict(pipeline_params or {})
        self.alias = alias
        self.challenger = challenger
        self.clock = clock or wall_clock.now
        self.registry = Registry(workspace)
        self.store = LoopStore(workspace)
        self.traffic = tr.Traffic(workspace, model)
        self.monitor = monitor_of(workspace)
        self.lease_ttl = float(lease_ttl)
        self.holder = f"pid {os.getpid()} on {socket.gethostname()} ({uuid.uuid4().hex[:8]})"
        self._holding = 0
        self._hold_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Loop({self.name!r}, model={self.model!r})"

    def spec(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.ref,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "triggers": [t.to_dict() for t in self.triggers],
            "canary": self.canary,
            "cooldown": self.cooldown,
            "window": self.window,
            "gate_window": self.gate_window,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "min_live_labels": self.min_live_labels,
            "alias": self.alias,
            "challenger": self.challenger,
        }

    # one tick ---------------------------------------------------------------------------
    def tick(self, now: float | datetime | None = None) -> TickResult:
        """Gather evidence, take one decision (which may be a chain: trigger, retrain,
        gate, canary or promotion), store it with its reasons, and return it."""
        at = _seconds(self.clock() if now is None else now)
        champion = self.registry.alias_version(self.model, self.alias)
        if champion is None:
            raise NotFoundError(
                f"model {self.model!r} has no {self.alias!r}; promote a first version before "
                "the loop can look after it"
            )
        with self.hold():
            return self._tick(at, champion)

    def declare(self) -> None:
        """Store this loop's spec (its canary share among it) so that servers and
        ``loopml loop status`` see it before its first tick; ticking does it too."""
        self.store.ensure(self.name, self.model, self.spec(), _initial_state())

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the loop's lease while the block runs, so no other process ticks it;
        renewed in the background every third of ``lease_ttl``. Raises
        :class:`~loopml.retraining.records.LoopBusyError` naming the holder if another
        process has it. Re-entrant: ``loopml loop run`` holds it across its ticks."""
        with self._hold_lock:
            first = self._holding == 0
            if first:
                self.declare()
                self.store.acquire(self.name, self.holder, self.lease_ttl)
            self._holding += 1
        stop = threading.Event()
        renewer = None
        if first:
            renewer = threading.Thread(
                target=self._renew, args=(stop,), name=f"lease-{self.name}", daemon=True
            )
            renewer.start()
        try:
            yield
        finally:
            with self._hold_lock:
                self._holding -= 1
                last = self._holding == 0
            if renewer is not None:
                stop.set()
                renewer.join()
            if last:
                self.store.release(self.name, self.holder)

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease_ttl / 3):
            try:
                self.store.acquire(self.name, self.holder, self.lease_ttl)
            except LoopmlError as exc:
                # The state's revision check still keeps a tick from overwriting another's.
                log.warning("loop %s: could not renew its lease: %s", self.name, exc)
            except Exception:
                log.exception("loop %s: renewing its lease failed; will retry", self.name)

    def _tick(self, at: float, champion: int) -> TickResult:
        record = self.store.get(self.name)
        state = {**_initial_state(), **record.state}
        state["tick"] += 1
        if state["started"] is None:
            state["started"] = at
        self.traffic.refresh()
        ctx = _Tick(self, state, at)
        evidence: Evidence | None = None
        if state["phase"] == CANARY:
            self._canary(ctx, champion)
        elif state["phase"] == WATCH:
            kept = self._watch(ctx, champion)
            if kept:
                evidence = self._steady(ctx)
        else:
            evidence = self._steady(ctx)
        state["last_tick"] = at
        self.store.save_state(self.name, state, record.revision)
        action = ctx.decisions[-1].kind if ctx.decisions else "hold"
        if ctx.decisions and ctx.decisions[-1].outcome in ("cooldown", "failed", "rejected"):
            action = f"{action} {ctx.decisions[-1].outcome}"
        return TickResult(state["tick"], at, action, tuple(ctx.decisions), evidence)

    def status(self) -> dict[str, Any]:
        """The stored state (phase, candidate, last retrain, ...) of this loop."""
        return self.store.get(self.name).state

    def decisions(self, limit: int | None = None) -> list[Decision]:
        return self.store.decisions(self.name, limit=limit)

    # steady: triggers, retrain, gate --------------------------------------------------------
    def _steady(self, ctx: _Tick) -> Evidence:
        state, at = ctx.state, ctx.at
        champion = self.registry.alias_version(self.model, self.alias)
        assert champion is not None
        evidence = self.evidence(at, state)
        verdicts = [t.check(evidence) for t in self.triggers]
        fired = [v for v in verdicts if v.fired]
        details = {"evidence": evidence.to_dict(), "triggers": [v.to_dict() for v in verdicts]}
        if not fired:
            reasons = [v.reason for v in verdicts] or ["the loop has no triggers"]
            ctx.record("hold", "no trigger", ["no trigger fired", *reasons], details=details)
            return evidence
        last = state["last_retrain"]
        if last is not None and at - last < self.cooldown:
            ctx.record(
                "trigger",
                "cooldown",
                [
                    *(v.reason for v in fired),
                    f"in cooldown: last retrain {(at - last) / 3600:.1f} h ago, cooldown "
                    f"{self.cooldown / 3600:.1f} h",
                ],
                details=details,
            )
            return evidence
        ctx.record("trigger", "fired", [f"{v.trigger}: {v.reason}" for v in fired], details=details)
        self._retrain(ctx, champion, fired)
        return evidence

    def evidence(self, at: float, state: Mapping[str, Any] | None = None) -> Evidence:
        """The window's drift, realised and estimated performance (from monitoring, against
        the training data of the versions that answered) and label counts."""
        state = state if state is not None else {**_initial_state(), **self.status()}
        since = at - self.window if self.window is not None else state.get("last_tick")
        report = self.window_report(since, at)
        last = state.get("last_retrain")
        common: dict[str, Any] = {
            "now": at,
            "since": since,
            "labels_since_retrain": self.traffic.labelled(last, at).height,
            "last_retrain": last,
            "started": state.get("started"),
        }
        if report is None:
            return Evidence(rows=0, labelled_rows=0, drift_score=None, **common)
        return Evidence(
            rows=report.rows,
            labelled_rows=report.labelled_rows,
            drift_score=report.drift_score,
            drifted_columns=tuple(report.drift.drifted_columns if report.drift else ()),
            performance=dict(report.performance or {}),
            estimated_performance=dict(report.estimated_performance or {}),
            **common,
        )

    def window_report(self, since: float | None, until: float) -> WindowReport | None:
        """Monitoring's window of the model's traffic (None when nothing was served)."""
        if since is not None and until <= since:
            return None
        try:
            report = self.monitor.check(self.model, since, until)
        except NotFoundError:
            return None
        return report if report.rows else None

    def _gate_data(self, at: float) -> tuple[pl.DataFrame | None, float | None]:
        """The most recent ``gate_window`` of labelled traffic, as a table with the gate's
        target column, and where that window starts."""
        latest = self.traffic.latest_labelled_time(at)
        if latest is None:
            return None, None
        start = latest - self.gate_window
        rows = self.traffic.labelled(start, at)
        gate = self._declared_gate()
        target = gate.target if gate is not None and gate.target else LABEL
        table = tr.features(rows).with_columns(rows[LABEL].alias(target))
        return table, start

    def _retrain(self, ctx: _Tick, champion: int, fired: list[Verdict]) -> None:
        state, at = ctx.state, ctx.at
        state["last_retrain"] = at
        gate_data, gate_start = self._gate_data(at)
        until = gate_start if gate_start is not None else at
        params = dict(self.pipeline_params)
        if "until" in self.pipeline.signature.parameters:
            params["until"] = until
        run = run_pipeline(
            self.workspace,
            self.pipeline,
            params,
            trigger=f"loop:{self.name}",
            raise_on_failure=False,
        )
        if run.status != "finished":
            ctx.record(
                "retrain",
                "failed",
                [f"pipeline {self.pipeline.name} run {run.id[:12]} {run.status}: {run.error}"],
                details={"pipeline_run": run.id},
            )
            return
        try:
            candidate = self._register(run, champion, fired)
        except LoopmlError as exc:
            # A pipeline whose output the loop cannot register fails this retrain only; the
            # cooldown (from this attempt) keeps the loop from retrying on every tick.
            ctx.record(
                "retrain",
                "failed",
                [f"pipeline {self.pipeline.name} run {run.id[:12]}: {exc}"],
                details={"pipeline_run": run.id},
            )
            return
        ctx.record(
            "retrain",
            "registered",
            [
                f"pipeline {self.pipeline.name} run {run.id[:12]} trained on data before "
                f"{_fmt(until)}; registered {candidate.ref}"
            ],
            to_version=candidate.version,
            details={"pipeline_run": run.id, "until": until},
            models=[("candidate", candidate.artifact_id)],
        )
        self._gate(ctx, champion, candidate, gate_data)

    def _register(self, run: Any, champion: int, fired: list[Verdict]) -> ModelVersion:
        output = run.output
        data = None
        if isinstance(output, dict):
            if "model" not in output:
                raise InvalidInputError(
                    f"pipeline {self.pipeline.name} returned {sorted(output)}; a loop's "
                    "pipeline returns the model, or {'model': ..., 'data': training table}"
                )
            output, data = output["model"], output.get("data")
        current = self.registry.get_version(self.model, champion)
        dataset_artifact_ids: list[str] = []
        example = None
        if isinstance(data, pl.DataFrame) and not data.is_empty():
            ds = Catalog(self.workspace).add(
                f"{self.model}-training",
                data,
                description=f"training data of a {self.model} version retrained by loop "
                f"{self.name}",
                tags=["loop"],
            )
            dataset_artifact_ids.append(ds.artifact_id)
            example = _example(data, current)
        return self.registry.register(
            self.model,
            output,
            example,
            run_id=run.id,
            dataset_artifact_ids=dataset_artifact_ids,
            description=f"retrained by loop {self.name}: {'; '.join(v.trigger for v in fired)}",
            tags={"loop": self.name},
        )

    def _gate(
        self, ctx: _Tick, champion: int, candidate: ModelVersion, data: pl.DataFrame | None
    ) -> None:
        target_alias = self.challenger if self.canary > 0 else self.alias
        gate = self._declared_gate()
        if gate is not None and gate.champion_alias is None and target_alias != self.alias:
            required = policy(self.workspace, self.model)
            if required is not None and required.to_dict() == gate.to_dict():
                # The model's promotion policy names this gate exactly as declared, so it
                # compares with the alias it moves: make the challenger the champion first.
                current = self.registry.alias_version(self.model, target_alias)
                if current != champion:
                    self.registry.move_alias(
                        self.model,
                        target_alias,
                        champion,
                        action="rollback" if current is not None else "promote",
                        reason=f"loop {self.name}: the challenger starts from the champion",
                        expected_from=current,
                    )
            else:
                gate = dataclasses.replace(gate, champion_alias=self.alias)
        if gate is not None and gate.needs_data and data is None:
            ctx.record(
                "gate",
                "failed",
                [f"no labelled traffic yet to gate {candidate.ref} on"],
                to_version=candidate.version,
            )
            return
        if self.registry.alias_version(self.model, target_alias) == candidate.version:
            raise InvalidInputError(f"{candidate.ref} is already {target_alias}")
        result = promote(
            self.workspace,
            self.model,
            candidate.version,
            target_alias,
            gate=gate,
            data=None if gate is None or not gate.needs_data else data,
            reason=f"loop {self.name}: candidate for {self.alias}",
        )
        rows = [] if result.gate is None else [" ".join(r[:4]) for r in result.gate.rows()]
        detail = {"gate": None if result.gate is None else result.gate.to_dict()}
        if not result.allowed:
            ctx.record(
                "gate",
                "failed",
                [result.reason, *[r for r in rows if r.endswith("FAIL")]],
                from_version=champion,
                to_version=candidate.version,
                details=detail,
                models=[("candidate", candidate.artifact_id)],
            )
            return
        n = 0 if data is None else data.height
        ctx.record(
            "gate",
            "passed",
            [f"{result.reason} on {n:,} labelled answers of the last window", *rows],
            from_version=champion,
            to_version=candidate.version,
            details=detail,
            models=[("candidate", candidate.artifact_id)],
        )
        state = ctx.state
        state["candidate"] = candidate.version
        state["previous"] = champion
        state["phase_since"] = ctx.at
        if self.canary > 0:
            state["phase"] = CANARY
            ctx.record(
                "canary",
                "started",
                [
                    f"{self.model}@{self.challenger} -> {candidate.version}: it answers "
                    f"{self.canary:.0%} of requests on servers started with --canary "
                    f"{self.model}@{self.challenger} (which take this loop's share)"
                ],
                from_version=champion,
                to_version=candidate.version,
            )
        else:
            state["phase"] = WATCH
            ctx.record(
                "promotion",
                "promoted",
                [f"{self.model}@{self.alias} -> {candidate.version}: gate passed, no canary"],
                from_version=champion,
                to_version=candidate.version,
            )

    def _declared_gate(self) -> Gate | None:
        """The loop's gate, or else the model's promotion policy (which the registry
        requires for every promotion of the model)."""
        return self.gate if self.gate is not None else policy(self.workspace, self.model)

    # canary and watch ---------------------------------------------------------------------
    def _live(self, version: int, other: int, since: float, at: float) -> _Comparison | None:
        """``version``'s realised metric on its labelled answers since ``since``, and
        ``other``'s on the same requests (re-scored from the logged inputs)."""
        rows = self.traffic.labelled(since, at, versions=[version])
        if rows.height < self.min_live_labels:
            return None
        classes = self.registry.get_version(self.model, version).signature.output.classes
        live = tr.score(self.metric, rows, classes)
        loaded = self.registry.load(f"{self.model}:{other}")
        inputs = tr.features(rows)
        # Score only what the metric reads: a second pass through the model costs as much
        # as the first.
        if self.metric in tr.PROBA_METRICS:
            rescored = rows.with_columns(
                tr.proba_column(loaded.predict_proba(inputs))
                if loaded.has_proba
                else pl.lit(None, pl.List(pl.Float64)).alias("proba")
            )
        else:
            rescored = rows.with_columns(pl.Series("prediction", loaded.predict(inputs)))
        reference = tr.score(self.metric, rescored, loaded.classes)
        if live is None or reference is None:
            return None
        return _Comparison(live, reference, rows.height, self._worse(live, reference))

    def _worse(self, live: float, reference: float) -> bool:
        if higher_is_better(self.metric):
            return live < reference - self.tolerance
        return live > reference + self.tolerance

    def _canary(self, ctx: _Tick, champion: int) -> None:
        state = ctx.state
        candidate = state["candidate"]
        if self.registry.alias_version(self.model, self.challenger) != candidate:
            ctx.record(
                "hold",
                "canary ended",
                [f"{self.model}@{self.challenger} was moved outside the loop; canary ended"],
            )
            _settle(state)
            return
        cmp = self._live(candidate, champion, state["phase_since"], ctx.at)
        if cmp is None:
            n = self.traffic.labelled(state["phase_since"], ctx.at, versions=[candidate]).height
            ctx.record(
                "hold",
                "canary waiting",
                [
                    f"canary {candidate}: {n} labelled answers, a verdict needs "
                    f"{self.min_live_labels} (and both classes)"
                ],
                to_version=candidate,
            )
            return
        words = (
            f"live {self.metric} of {candidate} {cmp.live:.4f} vs {cmp.reference:.4f} for "
            f"{champion} on the same {cmp.rows:,} labelled requests"
        )
        if cmp.worse:
            self.registry.move_alias(
                self.model,
                self.challenger,
                champion,
                action="rollback",
                reason=f"loop {self.name}: canary {candidate} rejected ({words})",
                expected_from=candidate,
            )
            ctx.record(
                "canary",
                "rejected",
                [words, f"{self.model}@{self.challenger} back to {champion}"],
                from_version=champion,
                to_version=candidate,
                details=cmp.to_dict(),
            )
            _settle(state)
            return
        ctx.record("canary", "passed", [words], champion, candidate, details=cmp.to_dict())
        event = self.registry.move_alias(
            self.model,
            self.alias,
            candidate,
            action="promote",
            reason=f"loop {self.name}: gate passed and canary held ({words})",
            expected_from=champion,
        )
        if not event.allowed:
            ctx.record("promotion", "failed", [event.reason], champion, candidate)
            _settle(state)
            return
        ctx.record(
            "promotion",
            "promoted",
            [f"{self.model}@{self.alias} -> {candidate}: canary held"],
            champion,
            candidate,
        )
        state["phase"] = WATCH
        state["previous"] = champion
        state["phase_since"] = ctx.at

    def _watch(self, ctx: _Tick, champion: int) -> bool:
        """Roll back a champion that does worse than the one it replaced; True when the
        champion was confirmed (the watch is over and triggers may act this tick)."""
        state = ctx.state
        candidate, previous = state["candidate"], state["previous"]
        if champion != candidate:
            ctx.record(
                "hold",
                "watch ended",
                [f"{self.model}@{self.alias} was moved outside the loop to {champion}"],
            )
            _settle(state)
            return False
        cmp = self._live(candidate, previous, state["phase_since"], ctx.at)
        if cmp is None:
            n = self.traffic.labelled(state["phase_since"], ctx.at, versions=[candidate]).height
            ctx.record(
                "hold",
                "watching",
                [
                    f"champion {candidate}: {n} labelled answers since its promotion, a "
                    f"verdict needs {self.min_live_labels} (and both classes)"
                ],
                to_version=candidate,
            )
            return False
        words = (
            f"live {self.metric} of champion {candidate} {cmp.live:.4f} vs {cmp.reference:.4f} "
            f"for {previous}, which it replaced, on the same {cmp.rows:,} labelled requests"
        )
        if not cmp.worse:
            ctx.record("hold", "champion holds", [words], previous, candidate, cmp.to_dict())
            _settle(state)
            return True
        for alias in (self.alias, self.challenger):
            current = self.registry.alias_version(self.model, alias)
            if current is not None and current != previous:
                self.registry.move_alias(
                    self.model,
                    alias,
                    previous,
                    action="rollback",
                    reason=f"loop {self.name}: {words}",
                    expected_from=current,
                )
        ctx.record(
            "rollback",
            "rolled back",
            [words, f"{self.model}@{self.alias} back to {previous}"],
            candidate,
            previous,
            cmp.to_dict(),
        )
        _settle(state)
        return False


@dataclass(frozen=True)
class _Comparison:
    live: float
    reference: float
    rows: int
    worse: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Tick:
    """One tick's state and the decisions it has recorded so far."""

    def __init__(self, loop: Loop, state: dict[str, Any], at: float) -> None:
        self.loop = loop
        self.state = state
        self.at = at
        self.decisions: list[Decision] = []

    def record(
        self,
        kind: str,
        outcome: str,
        reasons: Sequence[str],
        from_version: int | None = None,
        to_version: int | None = None,
        details: dict[str, Any] | None = None,
        *,
        models: Sequence[tuple[str, str]] = (),
    ) -> Decision:
        decision = self.loop.store.record(
            self.loop.name,
            self.loop.model,
            tick=self.state["tick"],
            kind=kind,
            outcome=outcome,
            reasons=reasons,
            at=self.at,
            from_version=from_version,
            to_version=to_version,
            details=details,
            model_artifacts=models,
        )
        self.decisions.append(decision)
        return decision


def _initial_state() -> dict[str, Any]:
    return {
        "phase": STEADY,
        "candidate": None,
        "previous": None,
        "phase_since": None,
        "last_retrain": None,
        "last_tick": None,
        "started": None,
        "tick": 0,
    }


def _settle(state: dict[str, Any]) -> None:
    state.update(phase=STEADY, candidate=None, previous=None, phase_since=None)


def _gate_metric(gate: Gate | None) -> str:
    if gate is not None:
        for check in gate.checks:
            if isinstance(check, NoWorseThanChampion):
                return check.metric
    return "roc_auc"


def _example(data: pl.DataFrame, champion: ModelVersion) -> Any:
    """The training table as the champion's signature saw its training data: its input
    columns, categorical ones as pandas categories (which fix the category order)."""
    columns = [c for c in champion.signature.columns if c in data.columns]
    if not columns:
        return None
    frame = data.select(columns).to_pandas()
    for spec in champion.signature.inputs:
        if spec.type == "category" and spec.name in frame.columns:
            frame[spec.name] = frame[spec.name].astype("category")
    return frame


def _seconds(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError("give the loop timezone-aware datetimes (e.g. UTC)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"the loop's time must be epoch seconds or a datetime: {value!r}")
    return float(value)


def _fmt(ts: float) -> str:
    return wall_clock.format_ts(ts)
