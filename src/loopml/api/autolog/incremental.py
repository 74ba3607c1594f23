"""Autologging of ``partial_fit``: an estimator trained batch by batch is one run.

The first ``partial_fit`` of an estimator opens a stream: it logs into the active run,
or into a run of its own that stays open for the following calls (that run is not made
the thread's active run, so other fits do not log into it). Each call logs the batch's
training metrics at the next step and the rows seen so far. The model is saved once,
when the stream ends, not after every batch (saving costs several times a small
``partial_fit``). A stream ends when the run it logs into ends, when the estimator is
``fit`` from scratch, when autologging is turned off or set again, and at interpreter exit.
A batch's metrics are the ones cheap to compute from its predictions (score, accuracy and
log loss, or R² and mean squared error), not the whole set a ``fit`` logs.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.api import fluent
from loopml.api.autolog import data, patches
from loopml.api.autolog.recording import Recorder, Settings, begin, clean_name, warn

SettingsGetter = Callable[[], Settings | None]


@dataclass
class Stream:
    recorder: Recorder
    # Held until the stream ends: its model is saved then.
    estimator: Any
    sample: Any = None
    step: int = 0
    rows: int = 0


_streams: dict[int, Stream] = {}
_lock = threading.RLock()


def _start(settings: Settings, estimator: Any, tags: dict[str, str]) -> Recorder | None:
    if fluent.active_run() is not None:
        return begin(settings, tags)
    try:
        tracker = fluent.remote_tracker() or fluent.tracker()
        name = clean_name(type(estimator).__qualname__)
        run = tracker.start_run(settings.experiment, name=name)
    except Exception as exc:
        warn(f"autolog could not start a run; partial_fit is not logged: {exc}")
        return None
    recorder = Recorder(run, True, settings)
    recorder.attempt("set tags", lambda: recorder.set_tags(tags))
    return recorder


def _watch_end(stream: Stream) -> None:
    """End the stream just before the user's run ends (``with`` block, ``run.end()``)."""
    run = stream.recorder.run
    original = run.end

    def end(*args: Any, **kwargs: Any) -> None:
        close(stream.estimator)
        original(*args, **kwargs)

    run.end = end  # type: ignore[method-assign]


def stream_for(settings: Settings, estimator: Any, tags: dict[str, str]) -> Stream | None:
    """The estimator's open stream, or a new one (its params logged)."""
    with _lock:
        stream = _streams.get(id(estimator))
        if stream is not None and stream.estimator is estimator:
            if not stream.recorder.run.ended:
                return stream
            _streams.pop(id(estimator), None)  # its run was ended by other means
        recorder = _start(settings, estimator, tags)
        if recorder is None:
            return None
        stream = Stream(recorder, estimator)
        _streams[id(estimator)] = stream
        _end_at_exit()
        if not recorder.owned:
            recorder.attempt("watch the run's end", lambda: _watch_end(stream))
        recorder.attempt("log params", lambda: recorder.log_params(estimator.get_params()))
        return stream


def record_batch(stream: Stream, X: Any, y: Any, sample_weight: Any) -> None:
    rec = stream.recorder
    if stream.sample is None and X is not None:
        stream.sample = data.sample(X)
    if rec.settings.log_training_metrics and y is not None:
        rec.attempt(
            "log training metrics",
            lambda: batch_metrics(rec, stream.estimator, X, y, sample_weight, stream.step),
        )
    rows = _rows(X)
    if rows is not None:
        stream.rows += rows
        rec.attempt(
            "log the rows seen",
            lambda: rec.log_metric("training_rows_seen", stream.rows, stream.step),
        )
    stream.step += 1


def batch_metrics(
    rec: Recorder, estimator: Any, X: Any, y: Any, sample_weight: Any, step: int
) -> None:
    """The batch's score and loss from one ``predict`` (and ``predict_proba``), computed with
    NumPy: scikit-learn's metric functions check their inputs at a cost of milliseconds
    each, which a batch of ``partial_fit`` would pay ten times over."""
    from sklearn.base import is_classifier, is_regressor

    y_true = np.asarray(y)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if is_regressor(estimator):
        y_pred = np.asarray(estimator.predict(X), dtype=float)
        y_num = y_true.astype(float)
        mse = float(np.average((y_num - y_pred) ** 2, weights=w))
        spread = float(np.average((y_num - np.average(y_num, weights=w)) ** 2, weights=w))
        rec.log_metric("training_mean_squared_error", mse, step)
        if spread > 0:  # R² as scikit-learn's score gives it
            r2 = 1.0 - mse / spread
            rec.log_metric("training_r2_score", r2, step)
            rec.log_metric("training_score", r2, step)
        return
    if not is_classifier(estimator):
        return
    accuracy = float(np.average(np.asarray(estimator.predict(X)) == y_true, weights=w))
    rec.log_metric("training_score", accuracy, step)
    rec.log_metric("training_accuracy_score", accuracy, step)
    classes = getattr(estimator, "classes_", None)
    if classes is None or not hasattr(estimator, "predict_proba"):
        return
    classes = np.asarray(classes)
    at = np.clip(np.searchsorted(classes, y_true), 0, len(classes) - 1)
    if not np.array_equal(classes[at], y_true):
        return  # a label the estimator does not know: no loss to speak of
    proba = np.asarray(estimator.predict_proba(X), dtype=float)
    picked = np.clip(proba[np.arange(len(at)), at], np.finfo(float).eps, 1.0)
    rec.log_metric("training_log_loss", float(-np.average(np.log(picked), weights=w)), step)


def _rows(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape:
        return int(shape[0])
    return len(X) if isinstance(X, list | tuple) else None


def fail(estimator: Any, error: BaseException) -> None:
    """A ``partial_fit`` raised: a run of the stream's own ends failed."""
    with _lock:
        stream = _streams.pop(id(estimator), None)
    if stream is not None and stream.recorder.owned:
        stream.recorder.attempt("end the run", lambda: stream.recorder.finish(error))


def close(estimator: Any) -> None:
    """End the estimator's stream: save its model, end a run of the stream's own."""
    with _lock:
        stream = _streams.pop(id(estimator), None)
    if stream is None or stream.estimator is not estimator:
        return
    rec = stream.recorder
    if rec.run.ended:
        return
    if rec.settings.log_models and stream.step and hasattr(estimator, "predict"):
        rec.attempt("log the model", lambda: rec.log_model(estimator, stream.sample))
    rec.attempt("end the run", lambda: rec.finish())


def close_all() -> None:
    with _lock:
        open_streams = list(_streams.values())
    for stream in open_streams:
        close(stream.estimator)


_at_exit: list[bool] = []


def _end_at_exit() -> None:
    # Registered once the tracker exists, so it runs before the tracker's own exit
    # handlers (atexit runs the newest first) while the writer still takes points.
    if not _at_exit:
        _at_exit.append(True)
        atexit.register(close_all)


patches.at_undo(close_all)
