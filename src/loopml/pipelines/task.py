"""One step execution as a self-contained, picklable task: the unit executors ship.

A task names its step by import path (not by pickled code), its inputs by digest and its
store by URL, so the same task runs in this process, in a local worker process or on a
Ray node on another machine. Workers touch only the artifact store, never the metadata
database: the coordinator records runs and lineage from the results.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from loopml.core.errors import InvalidInputError, LoopmlError
from loopml.pipelines import values
from loopml.pipelines.values import StoredValue
from loopml.store.artifacts import ArtifactStore

MAX_LOG_CHARS = 1_000_000


@dataclass(frozen=True)
class StepRef:
    """Where a worker finds a step: ``module`` + ``qualname``; ``file`` and ``sys_path``
    let a local worker import modules that were loaded from a path."""

    module: str
    qualname: str
    file: str | None
    sys_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Input:
    kind: str
    digest: str


@dataclass(frozen=True)
class StepTask:
    node: str
    step: StepRef
    code_version: str
    output_kind: str
    artifacts_url: str
    storage_options: dict[str, Any]
    inputs: dict[str, Input]
    literals: dict[str, Any]
    delay: float = 0.0


@dataclass
class TaskResult:
    node: str
    ok: bool
    output: StoredValue | None
    start_time: float
    end_time: float
    logs: str = ""
    error: str | None = None
    traceback: str | None = None
    # Failures of loopml's own checks (a bad return value) are not worth retrying.
    retryable: bool = True
    metrics: dict[str, float] = field(default_factory=dict)


def run_task(task: StepTask, fn: Callable[..., Any] | None = None) -> TaskResult:
    """Load inputs, call the step, store its output. Never raises: errors are results."""
    if task.delay:
        time.sleep(task.delay)
    start = time.time()
    logs = _LogBuffer()
    try:
        store = _store(task.artifacts_url, tuple(sorted(task.storage_options.items())))
        func = fn if fn is not None else resolve(task.step, task.code_version)
        annotations = getattr(func, "__annotations__", {})
        hints = _hints(func)
        kwargs = dict(task.literals)
        for arg, inp in task.inputs.items():
            kwargs[arg] = values.load(
                store,
                inp.kind,
                inp.digest,
                hints.get(arg, annotations.get(arg)),
                what=f"input {arg!r} of step {task.node}",
            )
    except Exception as exc:
        return _failed(task, start, logs.text(), exc, retryable=False)
    try:
        with logs.capture():
            value = func(**kwargs)
    except Exception as exc:
        return _failed(task, start, logs.text(), exc, retryable=True)
    try:
        stored = values.store(store, value, task.output_kind, what=f"step {task.node}")
    except Exception as exc:
        return _failed(task, start, logs.text(), exc, retryable=False)
    metrics = _numbers(value) if stored.kind == "json" else {}
    return TaskResult(task.node, True, stored, start, time.time(), logs.text(), metrics=metrics)


def _failed(
    task: StepTask, start: float, logs: str, exc: Exception, *, retryable: bool
) -> TaskResult:
    tb = "".join(traceback.format_exception(exc))[-20_000:]
    message = str(exc) if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
    return TaskResult(
        task.node, False, None, start, time.time(), logs, message, tb, retryable=retryable
    )


def _numbers(value: Any) -> dict[str, float]:
    """A dict of numbers returned by a step (an evaluation) is also logged as metrics."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    }


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}


@functools.lru_cache(maxsize=8)
def _store(url: str, options: tuple[tuple[str, Any], ...]) -> ArtifactStore:
    # One store per worker process and URL: fsspec filesystems are costly to create.
    return ArtifactStore(url, **dict(options))


def step_ref(fn: Callable[..., Any]) -> StepRef:
    """How a worker can import ``fn``; refuse steps that cannot be imported by name."""
    from loopml.pipelines.module_names import module_name

    qualname = fn.__qualname__
    name = module_name(fn)  # a script's steps import under the script's module name
    if "<locals>" in qualname or name == "__main__":
        where = "inside a function" if "<locals>" in qualname else "in __main__"
        raise InvalidInputError(
            f"step {qualname} is defined {where}; "
            "process and Ray workers import steps by module and name, so define it at the "
            "top level of an importable module (or use executor='local')"
        )
    module = sys.modules.get(fn.__module__)
    file = getattr(module, "__file__", None)
    return StepRef(name, qualname, file, tuple(p for p in sys.path if p))


def resolve(ref: StepRef, code_version: str) -> Callable[..., Any]:
    """Import the step a task names, and check it is the code the coordinator hashed."""
    from loopml.pipelines.code_version import code_version as version_of

    module = _import(ref)
    obj: Any = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part)
    fn = getattr(obj, "fn", obj)
    found = version_of(fn)
    if found != code_version:
        raise InvalidInputError(
            f"the worker's copy of step {ref.module}.{ref.qualname} differs from the "
            "coordinator's (code version mismatch); deploy the same code to every worker"
        )
    return fn


def _import(ref: StepRef) -> Any:
    for p in ref.sys_path:
        if p not in sys.path:
            sys.path.append(p)
    try:
        return importlib.import_module(ref.module)
    except ImportError:
        if ref.file is None:
            raise
    spec = importlib.util.spec_from_file_location(ref.module, ref.file)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"cannot import step module {ref.module} from {ref.file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[ref.module] = module
    spec.loader.exec_module(module)
    return module


class _Tee(io.TextIOBase):
    def __init__(self, *targets: TextIO) -> None:
        self._targets = targets

    def write(self, s: str) -> int:
        for t in self._targets:
            t.write(s)
        return len(s)

    def flush(self) -> None:
        for t in self._targets:
            t.flush()


class _LogBuffer:
    """What a step prints and logs, kept (and still shown) while it runs."""

    def __init__(self) -> None:
        self._buf = io.StringIO()

    def text(self) -> str:
        return self._buf.getvalue()[-MAX_LOG_CHARS:]

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        handler = logging.StreamHandler(self._buf)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        out, err = sys.stdout, sys.stderr
        sys.stdout = _Tee(out, self._buf)
        sys.stderr = _Tee(err, self._buf)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err
            root.removeHandler(handler)
