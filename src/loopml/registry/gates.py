"""Gates: the declared policy a model version must pass before an alias moves to it.

A gate is a list of checks (see :mod:`loopml.registry.checks`), written in Python or YAML::

    name: delay-gate
    target: delayed
    checks:
      - {type: threshold, metric: roc_auc, min: 0.70}
      - {type: no_worse_than_champion, metric: roc_auc, max_drop: 0.01}
      - {type: slice_threshold, column: origin, metric: roc_auc, min: 0.65, min_rows: 100}
      - {type: schema_compatible}
      - {type: smoke_test, max_latency_ms: 500, rows: 100}

Each check yields one :class:`CheckResult` with its value, limit and verdict; the gate
passes only when every check does. Metric checks compare candidate and champion on the
same data, evaluated once per model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.registry.checks import DECLARED, AnyCheck, Text, explain, refuse_as_invalid_input
from loopml.registry.checks import CheckResult as CheckResult
from loopml.registry.checks import GateContext as GateContext
from loopml.registry.checks import NoWorseThanChampion as NoWorseThanChampion
from loopml.registry.checks import SchemaCompatible as SchemaCompatible
from loopml.registry.checks import SliceThreshold as SliceThreshold
from loopml.registry.checks import SmokeTest as SmokeTest
from loopml.registry.checks import Threshold as Threshold

Check = AnyCheck


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict with every check's; stored as JSON in the alias history."""

    gate: str
    passed: bool
    checks: tuple[CheckResult, ...]
    candidate: str
    champion: str | None
    evaluations: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(check, value, limit, verdict, detail) as display strings, one per check."""

        def show(v: float | str | None) -> str:
            return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

        return [
            (c.description, show(c.value), c.limit, "pass" if c.passed else "FAIL", c.detail)
            for c in self.checks
        ]

    def to_dict(self) -> dict[str, Any]:
        return dict(_GATE_RESULT.dump_python(self, mode="json"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateResult:
        return _GATE_RESULT.validate_python(d)


@dataclass(frozen=True, config=DECLARED)
class Gate:
    """A named list of checks. ``target`` names the label column in the gate's data;
    ``slice_by`` is derived from the slice checks. ``champion_alias`` is the alias whose
    version the candidate is compared with (default: the alias being moved)."""

    checks: tuple[AnyCheck, ...]
    target: Text | None = None
    name: Text = "gate"
    champion_alias: Text | None = None

    def __post_init__(self) -> None:
        if not self.checks:
            raise InvalidInputError("a gate needs at least one check")
        if self.needs_data and not self.target:
            raise InvalidInputError(
                f"gate {self.name!r} has metric checks; give it the label column as target="
            )

    @property
    def needs_data(self) -> bool:
        return any(c.needs_data for c in self.checks)

    @property
    def slice_by(self) -> list[str]:
        return sorted({c.column for c in self.checks if isinstance(c, SliceThreshold)})

    def to_dict(self) -> dict[str, Any]:
        return dict(_GATE.dump_python(self, mode="json"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Gate:
        if not isinstance(d, Mapping):
            raise InvalidInputError("a gate definition is a mapping with 'checks'")
        try:
            return _GATE.validate_python(d)
        except ValidationError as exc:
            raise InvalidInputError(explain(exc, "gate")) from None

    @classmethod
    def load(cls, source: str | Path) -> Gate:
        """From a YAML file (a ``Path``, or a string naming one) or from YAML text."""
        if isinstance(source, str) and "\n" not in source and source.strip():
            try:
                parsed = yaml.safe_load(source)
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, Mapping):
                # One line that is not a YAML mapping: it names a file.
                source = Path(source)
        if isinstance(source, Path) and not source.is_file():
            raise NotFoundError(f"gate file {str(source)!r} does not exist")
        return cls.from_yaml(source)

    @classmethod
    def from_yaml(cls, source: str | Path) -> Gate:
        """From YAML text, or from the file when given a ``Path``."""
        text = source
        if isinstance(source, Path):
            try:
                text = source.read_text()
            except OSError as exc:
                raise InvalidInputError(f"cannot read gate file {str(source)!r}: {exc}") from None
        try:
            data = yaml.safe_load(str(text))
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"gate definition is not valid YAML: {exc}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def run(self, ctx: GateContext) -> GateResult:
        results = []
        for check in self.checks:
            try:
                results.append(check.run(ctx))
            except LoopmlError as exc:
                # A check that cannot run (tampered artifact, bad data) is a failed check.
                results.append(CheckResult(check.type, check.describe(), None, "", False, str(exc)))
        return GateResult(
            gate=self.name,
            passed=all(r.passed for r in results),
            checks=tuple(results),
            candidate=ctx.candidate.ref,
            champion=None if ctx.champion is None else ctx.champion.ref,
            evaluations={ref: e.digest for ref, e in ctx.evaluations.items() if e.digest},
        )


_GATE = TypeAdapter(Gate)
_GATE_RESULT = TypeAdapter(GateResult)
refuse_as_invalid_input(Gate, "gate")
