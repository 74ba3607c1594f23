"""``@pipeline``: a function whose step calls describe a DAG.

Building calls the function with the run's parameters while a builder is active: each
step call adds a node and returns a ``StepOutput`` placeholder, which can only be passed
to further steps (or returned). Nothing runs and no data is touched: the runner combines
the graph with data later, the way Kedro keeps pipelines apart from runners.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInputError
from loopml.pipelines import build_context
from loopml.pipelines.graph import Graph, Node, Ref
from loopml.pipelines.module_names import module_name
from loopml.pipelines.step import NAME_RE, Step

if TYPE_CHECKING:
    from loopml.pipelines.records import PipelineRun
    from loopml.store.workspace import Workspace

# Keyword arguments of ``Pipeline.run``; a pipeline parameter may not use these names.
RUN_OPTIONS = ("workspace", "executor", "cache", "max_workers", "address", "trigger")


class StepOutput:
    """The future output of a node. Only good for passing to another step."""

    __slots__ = ("_builder", "node")

    def __init__(self, builder: _GraphBuilder, node: str) -> None:
        self._builder = builder
        self.node = node

    def __repr__(self) -> str:
        return f"<output of step {self.node}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._misuse(f".{name}")

    def __bool__(self) -> bool:
        raise self._misuse("a truth test")

    def __iter__(self) -> Any:
        raise self._misuse("iteration")

    def __getitem__(self, key: Any) -> Any:
        raise self._misuse("indexing")

    def _misuse(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"inside a pipeline function, {self.node}(...) returns a placeholder for its "
            f"output, not the value ({what} is not possible); pass it to another step and "
            "use the value there"
        )


class _GraphBuilder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[str, Node] = {}

    def add(self, step: Step, arguments: dict[str, Any]) -> StepOutput:
        node_name = step.name
        n = 2
        while node_name in self.nodes:
            node_name = f"{step.name}_{n}"
            n += 1
        args: dict[str, Any] = {}
        for key, value in arguments.items():
            if isinstance(value, StepOutput):
                if value._builder is not self:
                    raise InvalidInputError(
                        f"step {step.name} got an output of another pipeline build"
                    )
                args[key] = Ref(value.node)
            elif _contains_output(value):
                raise InvalidInputError(
                    f"step {step.name}: argument {key!r} holds step outputs inside a "
                    "container; pass each step output as its own argument"
                )
            else:
                args[key] = value
        self.nodes[node_name] = Node(node_name, step, args)
        return StepOutput(self, node_name)


def _contains_output(value: Any) -> bool:
    if isinstance(value, StepOutput):
        return True
    if isinstance(value, Mapping):
        return any(_contains_output(v) for v in value.values())
    if isinstance(value, list | tuple | set):
        return any(_contains_output(v) for v in value)
    return False


class Pipeline:
    """A decorated pipeline function. ``run(**params)`` builds the DAG and runs it."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        if not inspect.isfunction(fn):
            raise InvalidInputError(f"@pipeline decorates a function, not {type(fn).__name__}")
        self.fn = fn
        self.name = name or fn.__name__
        if not NAME_RE.fullmatch(self.name):
            raise InvalidInputError(f"{self.name!r} is not a valid pipeline name")
        self.signature = inspect.signature(fn)
        clash = [p for p in self.signature.parameters if p in RUN_OPTIONS]
        if clash:
            raise InvalidInputError(
                f"pipeline {self.name}: parameter name(s) {', '.join(clash)} are reserved for "
                f"run options ({', '.join(RUN_OPTIONS)}); rename them"
            )
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise InvalidInputError(
                    f"pipeline {self.name}: parameters must be named (no *args, **kwargs "
                    "or positional-only)"
                )
        # Run as a script, the module is __main__; record the name it imports as, so
        # `loopml pipeline run module:pipeline` and resume find it and share its cache.
        self.ref = f"{module_name(fn)}:{fn.__qualname__}"
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"

    def __call__(self, **params: Any) -> Any:
        raise InvalidInputError(
            f"run a pipeline with {self.name}.run(**params); calling it directly is not supported"
        )

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """All parameters with defaults applied; unknown or missing ones are errors."""
        known = self.signature.parameters
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidInputError(
                f"pipeline {self.name} has no parameter(s) {', '.join(unknown)}; its "
                f"parameters are: {', '.join(known) or '(none)'}"
            )
        missing = [
            n for n, p in known.items() if p.default is inspect.Parameter.empty and n not in params
        ]
        if missing:
            raise InvalidInputError(
                f"pipeline {self.name} needs a value for parameter(s) {', '.join(missing)}, "
                "which have no default"
            )
        return {n: params.get(n, p.default) for n, p in known.items()}

    def check_types(self, params: Mapping[str, Any]) -> None:
        """Refuse a value that does not fit its parameter's annotation, before anything
        runs (``depth: int`` given ``"abc"``). Exact types: no "8" for an int, no True
        for an int; an int is accepted for a float. Unannotated and ``Any`` accept all."""
        hints = _type_hints(self.fn)
        for name, value in params.items():
            annotation = hints.get(name)
            if annotation is None or annotation is Any:
                continue
            problem = _type_problem(annotation, value)
            if problem is not None:
                raise InvalidInputError(
                    f"pipeline {self.name}: parameter {name} must be {_type_name(annotation)}, "
                    f"got {type(value).__name__} {value!r:.80}{problem}"
                )

    def build(self, **params: Any) -> Graph:
        """The validated DAG for these parameters. Runs no step."""
        resolved = self.resolve_params(params)
        self.check_types(resolved)
        builder = _GraphBuilder(self.name)
        with build_context.active(builder):
            returned = self.fn(**resolved)
        if not builder.nodes:
            raise InvalidInputError(f"pipeline {self.name} calls no step")
        graph = Graph(self.name, builder.nodes, _output(self.name, returned), resolved)
        graph.validate()
        return graph

    def run(
        self,
        *,
        workspace: Workspace,
        executor: str = "local",
        cache: bool = True,
        max_workers: int | None = None,
        address: str | None = None,
        trigger: str = "manual",
        **params: Any,
    ) -> PipelineRun:
        """Build and run on ``workspace``; raise PipelineFailedError if a step fails."""
        from loopml.pipelines.runner import run_pipeline

        return run_pipeline(
            workspace,
            self,
            params,
            executor=executor,
            cache=cache,
            max_workers=max_workers,
            address=address,
            trigger=trigger,
        )


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # names only a type checker can resolve: nothing to check against
        return {}


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _type_problem(annotation: Any, value: Any) -> str | None:
    """None if ``value`` fits ``annotation``; else a detail to add (may be "")."""
    from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(
            annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True)
        )
    except (PydanticSchemaGenerationError, TypeError, ValueError):
        return None  # a type pydantic cannot check: leave it to the step
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        return f" (at {where})" if where else ""
    return None


def _output(name: str, returned: Any) -> Any:
    if returned is None:
        return None
    if isinstance(returned, StepOutput):
        return Ref(returned.node)
    if isinstance(returned, dict):
        return {str(k): _output(name, v) for k, v in returned.items()}
    if isinstance(returned, list | tuple):
        return [_output(name, v) for v in returned]
    raise InvalidInputError(
        f"pipeline {name} returned a {type(returned).__name__}; a pipeline function returns "
        "step outputs (one, or a dict/list of them) or nothing"
    )


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make ``fn`` a pipeline: ``@pipeline`` or ``@pipeline(name="training")``."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    return wrap(fn) if fn is not None else wrap
