"""The scheduler: runs pipelines whose cron time has come or whose trigger fired.

``tick(now)`` does one pass and is what tests drive with an injected clock; ``serve``
loops over ticks until told to stop (SIGTERM/SIGINT in ``loopml scheduler``). Stopping
is clean: a pipeline run in progress stops between steps and is recorded as interrupted,
resumable with ``loopml pipeline resume``. Each occurrence is claimed with a conditional
update first, so several schedulers on one workspace never run it twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update

from loopml.core.errors import LoopmlError
from loopml.pipelines import params as params_mod
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.records import PipelineRun
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.schedules import (
    Schedule,
    latest_dataset_version,
    list_schedules,
    next_cron_time,
)
from loopml.store.metadata.tables import pipeline_events, pipeline_schedules
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

log = logging.getLogger("loopml.scheduler")


@dataclass(frozen=True)
class Fired:
    schedule: str
    reason: str
    run: PipelineRun | None
    error: str | None = None


class Scheduler:
    def __init__(
        self,
        ws: Workspace,
        *,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.ws = ws
        self.clock = clock
        self.stop = stop or threading.Event()
        # One tracker for every run this scheduler starts, not one per pipeline run.
        self.tracker = tracker if tracker is not None else Tracker(ws)

    def tick(self, now: float | None = None) -> list[Fired]:
        """Run everything due at ``now``; return what fired."""
        at = self.clock() if now is None else now
        fired = []
        for sched in list_schedules(self.ws):
            if self.stop.is_set():
                break
            if not sched.enabled:
                continue
            claim = self._claim(sched, at)
            if claim is not None:
                fired.append(self._run(sched, *claim))
        return fired

    def serve(self, poll_seconds: float = 5.0) -> None:
        """Tick until ``stop`` is set; a tick that fails is logged, not fatal."""
        while not self.stop.is_set():
            try:
                for f in self.tick():
                    log.info("schedule %s fired (%s): %s", f.schedule, f.reason, f.error or "ok")
            except Exception:
                log.exception("scheduler tick failed; retrying at the next poll")
            self.stop.wait(poll_seconds)

    # claiming ---------------------------------------------------------------------
    def _claim(self, s: Schedule, now: float) -> tuple[str, dict[str, object]] | None:
        """(reason, extra params) if this scheduler won the occurrence that is due."""
        if s.kind == "cron":
            if s.next_run is None or s.next_run > now:
                return None
            # Missed occurrences collapse into one run; the next is after ``now``.
            if not self._swap(s, "next_run", s.next_run, next_cron_time(s.spec, now)):
                return None
            return f"cron {s.spec} at {s.next_run:.0f}", {}
        if s.kind == "dataset":
            latest = latest_dataset_version(self.ws, s.spec)
            if latest <= (s.cursor or 0):
                return None
            if not self._swap(s, "cursor", s.cursor, latest):
                return None
            from loopml.data import catalog

            assert s.param is not None
            return f"dataset {s.spec}:{latest}", {s.param: catalog.get(self.ws, s.spec, latest)}
        if s.kind == "event":
            with self.ws.engine.connect() as conn:
                newest = conn.execute(
                    select(func.max(pipeline_events.c.id)).where(
                        pipeline_events.c.name == s.spec,
                        pipeline_events.c.id > (s.cursor or 0),
                    )
                ).scalar()
            if newest is None or not self._swap(s, "cursor", s.cursor, int(newest)):
                return None
            return f"event {s.spec}#{newest}", {}
        return None

    def _swap(self, s: Schedule, column: str, old: object, new: object) -> bool:
        col = pipeline_schedules.c[column]
        with self.ws.write_engine.begin() as conn:
            done = conn.execute(
                update(pipeline_schedules)
                .where(
                    pipeline_schedules.c.id == s.id,
                    col.is_(None) if old is None else col == old,
                )
                .values({column: new})
            )
        return bool(done.rowcount)

    # running ----------------------------------------------------------------------
    def _run(self, s: Schedule, reason: str, extra: dict[str, object]) -> Fired:
        try:
            pipe = load_pipeline(s.pipeline_ref)
            params = {**params_mod.decode(self.ws, s.params), **extra}
            run = run_pipeline(
                self.ws,
                pipe,
                params,
                executor=s.executor,
                trigger=f"schedule:{s.name} ({reason})"[:250],
                should_stop=self.stop.is_set,
                raise_on_failure=False,
                tracker=self.tracker,
            )
        except LoopmlError as exc:
            log.error("schedule %s could not run: %s", s.name, exc)
            return Fired(s.name, reason, None, str(exc))
        with self.ws.write_engine.begin() as conn:
            conn.execute(
                update(pipeline_schedules)
                .where(pipeline_schedules.c.id == s.id)
                .values(last_run_id=run.id)
            )
        return Fired(s.name, reason, run, None if run.status == "finished" else run.status)
