"""The pipeline being built right now, if any (a context variable, not a global)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from loopml.pipelines.step import Step


class Builder(Protocol):
    def add(self, step: Step, arguments: dict[str, Any]) -> Any: ...


_current: contextvars.ContextVar[Builder | None] = contextvars.ContextVar(
    "loopml_pipeline_builder", default=None
)


def current() -> Builder | None:
    return _current.get()


@contextlib.contextmanager
def active(builder: Builder) -> Iterator[None]:
    token = _current.set(builder)
    try:
        yield
    finally:
        _current.reset(token)
