"""``@step``: a plain typed function plus how to run it. A pure definition, no data.

Called inside a pipeline function, a step returns a placeholder for its output and adds a
node to the pipeline being built; called anywhere else it is just the function, so steps
stay unit-testable.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from loopml.core.errors import InvalidInputError
from loopml.pipelines import build_context
from loopml.pipelines.code_version import code_version
from loopml.pipelines.types import OutputKind, kind_of_annotation

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class StepSpec:
    """What the runner needs to know about a step, resolved once, before anything runs."""

    name: str
    output_kind: OutputKind
    parameters: tuple[str, ...]
    annotations: dict[str, Any]
    code_version: str
    cache: bool
    retries: int
    retry_delay: float


class Step:
    """A decorated function. ``step.fn`` is the original function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        retry_delay: float = 0.0,
    ) -> None:
        if not callable(fn) or not inspect.isfunction(fn):
            raise InvalidInputError(f"@step decorates a function, not {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
            raise InvalidInputError(
                f"step {fn.__qualname__} must be a plain function, not async or a generator"
            )
        self.fn = fn
        self.name = name or fn.__name__
        if not NAME_RE.fullmatch(self.name):
            raise InvalidInputError(f"{self.name!r} is not a valid step name")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInputError(f"step {self.name}: retries must be a whole number >= 0")
        if not isinstance(retry_delay, int | float) or retry_delay < 0:
            raise InvalidInputError(f"step {self.name}: retry_delay must be >= 0 seconds")
        self.cache = bool(cache)
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.signature = inspect.signature(fn)
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidInputError(
                    f"step {self.name}: *args/**kwargs are not supported; name every input "
                    "so it can be cached and recorded"
                )
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"Step({self.name!r})"

    @functools.cached_property
    def spec(self) -> StepSpec:
        """Resolved lazily (at pipeline build) so annotations may name later definitions."""
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception as exc:
            raise InvalidInputError(
                f"step {self.name}: cannot resolve its type annotations ({exc}); import the "
                "types it names at module level"
            ) from None
        where = f"step {self.name} ({self.fn.__module__}.{self.fn.__qualname__})"
        kind = kind_of_annotation(hints["return"], where=where) if "return" in hints else "auto"
        return StepSpec(
            name=self.name,
            output_kind=kind,
            parameters=tuple(self.signature.parameters),
            annotations={k: v for k, v in hints.items() if k != "return"},
            code_version=code_version(self.fn),
            cache=self.cache,
            retries=self.retries,
            retry_delay=self.retry_delay,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = build_context.current()
        if builder is None:
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInputError(f"step {self.name} called with bad arguments: {exc}") from None
        bound.apply_defaults()
        return builder.add(self, dict(bound.arguments))


@overload
def step(fn: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_delay: float = 0.0,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_delay: float = 0.0,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make ``fn`` a pipeline step: ``@step`` or ``@step(cache=False, retries=2)``."""

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, name=name, cache=cache, retries=retries, retry_delay=retry_delay)

    return wrap(fn) if fn is not None else wrap
