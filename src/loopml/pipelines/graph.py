"""The DAG a pipeline definition produces: nodes (a step plus its arguments) and edges.

Arguments are literal values or ``Ref``s to another node's output. Validation happens
here, before anything runs: unknown references, cycles, outputs that cannot be passed
where they go, parameters that cannot be part of a cache key.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import InvalidInputError
from loopml.pipelines.cache_key import canonical_json
from loopml.pipelines.step import Step
from loopml.pipelines.types import accepts


@dataclass(frozen=True)
class Ref:
    """The output of node ``node``, used as an argument of another node."""

    node: str


def ref(node: str) -> Ref:
    return Ref(node)


@dataclass
class Node:
    name: str
    step: Step
    args: dict[str, Any]

    @property
    def deps(self) -> dict[str, str]:
        """argument name -> upstream node name."""
        return {k: v.node for k, v in self.args.items() if isinstance(v, Ref)}

    @property
    def literals(self) -> dict[str, Any]:
        return {k: v for k, v in self.args.items() if not isinstance(v, Ref)}


@dataclass
class Graph:
    name: str
    nodes: dict[str, Node]
    output: Any = None  # a Ref, a dict/list of Refs, or None
    params: dict[str, Any] = field(default_factory=dict)

    def order(self) -> list[str]:
        """Nodes in an order where every node comes after its inputs."""
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for node in self.nodes.values():
            sorter.add(node.name, *node.deps.values())
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise InvalidInputError(
                f"pipeline {self.name} has a cycle: {cycle}; a step cannot depend on its "
                "own output, directly or through others"
            ) from None
        # Keep definition order where the dependencies allow it: stable, readable output.
        position = {n: i for i, n in enumerate(self.nodes)}
        return _stable(order, self.nodes, position)

    def downstream(self, name: str) -> set[str]:
        seen: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for node in self.nodes.values():
                if current in node.deps.values() and node.name not in seen:
                    seen.add(node.name)
                    frontier.append(node.name)
        return seen

    def validate(self) -> list[str]:
        """Check everything that can be checked without running; return the order."""
        for node in self.nodes.values():
            missing = [d for d in node.deps.values() if d not in self.nodes]
            if missing:
                raise InvalidInputError(
                    f"pipeline {self.name}: node {node.name} reads the output of "
                    f"{', '.join(missing)}, which is not a node of this pipeline"
                )
        order = self.order()
        for node in self.nodes.values():
            spec = node.step.spec  # resolves annotations: unstorable returns fail here
            params = set(spec.parameters)
            unknown = set(node.args) - params
            if unknown:
                raise InvalidInputError(
                    f"pipeline {self.name}: step {node.step.name} has no parameter(s) "
                    f"{', '.join(sorted(unknown))}"
                )
            absent = [p for p in spec.parameters if p not in node.args]
            if absent:
                raise InvalidInputError(
                    f"pipeline {self.name}: step {node.step.name} is missing argument(s) "
                    f"{', '.join(absent)}"
                )
            for arg, upstream in node.deps.items():
                up_kind = self.nodes[upstream].step.spec.output_kind
                if up_kind == "none":
                    raise InvalidInputError(
                        f"pipeline {self.name}: {node.name}({arg}=...) reads the output of "
                        f"{upstream}, which is annotated to return None"
                    )
                if not accepts(spec.annotations.get(arg), up_kind):
                    raise InvalidInputError(
                        f"pipeline {self.name}: {node.name} parameter {arg!r} is annotated "
                        f"{spec.annotations.get(arg)!r} but receives the {up_kind} output of "
                        f"{upstream}"
                    )
            for arg, value in node.literals.items():
                check_literal(value, what=f"argument {arg!r} of step {node.name}")
        return order

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "name": n.name,
                    "step": n.step.name,
                    "deps": n.deps,
                    "params": {k: describe_literal(v) for k, v in n.literals.items()},
                }
                for n in self.nodes.values()
            ],
            "output": _output_json(self.output),
        }

    @classmethod
    def from_nodes(cls, name: str, nodes: Mapping[str, tuple[Step, Mapping[str, Any]]]) -> Graph:
        """An explicitly wired graph: ``{"train": (train, {"data": ref("load")})}``."""
        built = {}
        for node_name, (step_obj, args) in nodes.items():
            if not isinstance(step_obj, Step):
                raise InvalidInputError(f"node {node_name}: {step_obj!r} is not a @step")
            built[node_name] = Node(node_name, step_obj, dict(args))
        graph = cls(name, built)
        graph.validate()
        return graph


def check_literal(value: Any, *, what: str) -> None:
    if _is_catalog_dataset(value):
        return
    canonical_json(value, what=what)


def describe_literal(value: Any) -> Any:
    if _is_catalog_dataset(value):
        return {"dataset": value.ref, "digest": value.digest}
    return value


def _is_catalog_dataset(value: Any) -> bool:
    from loopml.data.dataset import Dataset

    return isinstance(value, Dataset)


def _output_json(output: Any) -> Any:
    if isinstance(output, Ref):
        return {"ref": output.node}
    if isinstance(output, dict):
        return {k: _output_json(v) for k, v in output.items()}
    if isinstance(output, list | tuple):
        return [_output_json(v) for v in output]
    return None


def _stable(order: list[str], nodes: Mapping[str, Node], position: dict[str, int]) -> list[str]:
    done: set[str] = set()
    result: list[str] = []
    remaining = sorted(order, key=position.__getitem__)
    while remaining:
        for i, name in enumerate(remaining):
            if all(d in done for d in nodes[name].deps.values()):
                result.append(name)
                done.add(name)
                del remaining[i]
                break
    return result
