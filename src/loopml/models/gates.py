"""Gates: the declared policy a model version must pass before an alias moves to it.

A gate is a list of checks, written in Python or YAML::

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

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.models.artifact import example_table
from loopml.models.evaluation import EvaluationResult, higher_is_better
from loopml.models.loaded import LoadedModel
from loopml.models.registry import ModelVersion
from loopml.models.table import head, to_arrow


@dataclass(frozen=True)
class CheckResult:
    check: str
    description: str
    value: float | str | None
    limit: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        return cls(
            **{
                k: d.get(k, "")
                for k in ("check", "description", "value", "limit", "passed", "detail")
            }
        )


@dataclass(frozen=True)
class GateResult:
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
        return {
            "gate": self.gate,
            "passed": self.passed,
            "candidate": self.candidate,
            "champion": self.champion,
            "evaluations": self.evaluations,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateResult:
        return cls(
            d["gate"],
            bool(d["passed"]),
            tuple(CheckResult.from_dict(c) for c in d["checks"]),
            d["candidate"],
            d.get("champion"),
            dict(d.get("evaluations") or {}),
        )


class GateContext:
    """What checks look at; models and evaluations are computed at most once each."""

    def __init__(
        self,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        load: Callable[[ModelVersion], LoadedModel],
        evaluate: Callable[[ModelVersion, LoadedModel], EvaluationResult] | None,
        data: Any,
    ) -> None:
        self.candidate = candidate
        self.champion = champion
        self.data = data
        self._load = load
        self._evaluate = evaluate
        self._models: dict[str, LoadedModel] = {}
        self.evaluations: dict[str, EvaluationResult] = {}

    def model(self, mv: ModelVersion) -> LoadedModel:
        if mv.ref not in self._models:
            self._models[mv.ref] = self._load(mv)
        return self._models[mv.ref]

    def evaluation(self, mv: ModelVersion) -> EvaluationResult:
        if self._evaluate is None:
            raise InvalidInputError("this gate has metric checks; pass evaluation data")
        if mv.ref not in self.evaluations:
            self.evaluations[mv.ref] = self._evaluate(mv, self.model(mv))
        return self.evaluations[mv.ref]


class Check(Protocol):
    type: ClassVar[str]
    needs_data: ClassVar[bool]

    def describe(self) -> str: ...

    def run(self, ctx: GateContext) -> CheckResult: ...

    def to_dict(self) -> dict[str, Any]: ...


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _limit_text(lo: float | None, hi: float | None) -> str:
    parts = [f">= {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else ""]
    return " and ".join(p for p in parts if p)


def _check_range(metric: str, lo: float | None, hi: float | None) -> None:
    higher_is_better(metric)  # validates the name
    if lo is None and hi is None:
        raise InvalidInputError(f"a threshold on {metric!r} needs min or max (or both)")


@dataclass(frozen=True)
class Threshold:
    """The candidate's metric lies within [min, max]."""

    metric: str
    min: float | None = None
    max: float | None = None
    type: ClassVar[str] = "threshold"
    needs_data: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_range(self.metric, self.min, self.max)

    def describe(self) -> str:
        return f"{self.metric} {_limit_text(self.min, self.max)}"

    def run(self, ctx: GateContext) -> CheckResult:
        value = ctx.evaluation(ctx.candidate).metrics.get(self.metric)
        limit = _limit_text(self.min, self.max)
        if value is None:
            return CheckResult(
                self.type,
                self.describe(),
                None,
                limit,
                False,
                f"{self.metric} is not defined for this model or data",
            )
        ok = (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        return CheckResult(self.type, self.describe(), value, limit, ok)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "metric": self.metric, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class NoWorseThanChampion:
    """The candidate is at most ``max_drop`` worse than the champion on the same data."""

    metric: str
    max_drop: float = 0.0
    type: ClassVar[str] = "no_worse_than_champion"
    needs_data: ClassVar[bool] = True

    def __post_init__(self) -> None:
        higher_is_better(self.metric)
        if self.max_drop < 0:
            raise InvalidInputError("max_drop must be >= 0 (how much worse is tolerated)")

    def describe(self) -> str:
        return f"{self.metric} no worse than champion by more than {self.max_drop:g}"

    def run(self, ctx: GateContext) -> CheckResult:
        cand = ctx.evaluation(ctx.candidate).metrics.get(self.metric)
        if ctx.champion is None:
            return CheckResult(
                self.type,
                self.describe(),
                cand,
                "no champion yet",
                True,
                "first promotion: nothing to compare with",
            )
        champ = ctx.evaluation(ctx.champion).metrics.get(self.metric)
        if cand is None or champ is None:
            return CheckResult(
                self.type,
                self.describe(),
                cand,
                "n/a",
                False,
                f"{self.metric} is not defined for one of the models",
            )
        if higher_is_better(self.metric):
            bound, ok, op = champ - self.max_drop, cand >= champ - self.max_drop, ">="
        else:
            bound, ok, op = champ + self.max_drop, cand <= champ + self.max_drop, "<="
        return CheckResult(
            self.type,
            self.describe(),
            cand,
            f"{op} {bound:.4f}",
            ok,
            f"champion {ctx.champion.ref}: {champ:.4f}; candidate {cand - champ:+.4f}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "metric": self.metric, "max_drop": self.max_drop}


@dataclass(frozen=True)
class SliceThreshold:
    """Every slice by ``column`` with at least ``min_rows`` rows meets the limit."""

    column: str
    metric: str
    min: float | None = None
    max: float | None = None
    min_rows: int = 30
    type: ClassVar[str] = "slice_threshold"
    needs_data: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_range(self.metric, self.min, self.max)

    def describe(self) -> str:
        return f"{self.metric} {_limit_text(self.min, self.max)} in every {self.column} slice"

    def run(self, ctx: GateContext) -> CheckResult:
        values = ctx.evaluation(ctx.candidate).slice_values(self.column, self.metric, self.min_rows)
        limit = _limit_text(self.min, self.max)
        if not values:
            return CheckResult(
                self.type,
                self.describe(),
                None,
                limit,
                False,
                f"no {self.column} slice has {self.min_rows}+ rows with a defined {self.metric}",
            )
        failing = {
            k: v
            for k, v in values.items()
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max)
        }
        worst_key = (min if self.min is not None else max)(values, key=lambda k: values[k])
        detail = (
            "failing: " + ", ".join(f"{self.column}={k}: {v:.4f}" for k, v in failing.items())
            if failing
            else f"worst: {self.column}={worst_key} ({len(values)} slices)"
        )
        return CheckResult(
            self.type, self.describe(), values[worst_key], limit, not failing, detail
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "column": self.column,
            "metric": self.metric,
            "min": self.min,
            "max": self.max,
            "min_rows": self.min_rows,
        }


@dataclass(frozen=True)
class SchemaCompatible:
    """Input that the champion accepts is accepted by the candidate, with the same output."""

    type: ClassVar[str] = "schema_compatible"
    needs_data: ClassVar[bool] = False

    def describe(self) -> str:
        return "input schema compatible with champion"

    def run(self, ctx: GateContext) -> CheckResult:
        if ctx.champion is None:
            return CheckResult(self.type, self.describe(), "n/a", "no champion yet", True)
        problems = ctx.candidate.signature.incompatibilities(ctx.champion.signature)
        return CheckResult(
            self.type,
            self.describe(),
            f"{len(problems)} problem(s)",
            "0 problems",
            not problems,
            "; ".join(problems) or f"same inputs as {ctx.champion.ref}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class SmokeTest:
    """The candidate loads from verified bytes and answers a sample within the budget.

    The latency is the median of ``repeats`` calls after one warm-up call, in ms.
    """

    max_latency_ms: float = 1000.0
    rows: int = 100
    repeats: int = 5
    type: ClassVar[str] = "smoke_test"
    needs_data: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.max_latency_ms <= 0 or self.rows < 1 or self.repeats < 1:
            raise InvalidInputError("smoke_test needs max_latency_ms > 0, rows >= 1, repeats >= 1")

    def describe(self) -> str:
        return f"loads and answers {self.rows} rows within {self.max_latency_ms:g} ms"

    def run(self, ctx: GateContext) -> CheckResult:
        limit = f"<= {self.max_latency_ms:g} ms"
        model = ctx.model(ctx.candidate)
        sample = (
            head(to_arrow(ctx.data, what="gate data"), self.rows)
            if ctx.data is not None
            else example_table(model)
        )
        model.predict(sample)
        timings = []
        for _ in range(self.repeats):
            started = time.perf_counter()
            out = model.predict(sample)
            timings.append((time.perf_counter() - started) * 1000)
        latency = statistics.median(timings)
        if len(out) != sample.num_rows:
            return CheckResult(
                self.type,
                self.describe(),
                latency,
                limit,
                False,
                f"answered {len(out)} predictions for {sample.num_rows} rows",
            )
        return CheckResult(
            self.type,
            self.describe(),
            latency,
            limit,
            latency <= self.max_latency_ms,
            f"{sample.num_rows} rows",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "max_latency_ms": self.max_latency_ms,
            "rows": self.rows,
            "repeats": self.repeats,
        }


CHECK_TYPES: dict[str, type[Any]] = {
    c.type: c for c in (Threshold, NoWorseThanChampion, SliceThreshold, SchemaCompatible, SmokeTest)
}
CHECK_TYPES["slice_minimum"] = SliceThreshold


def check_from_dict(d: Mapping[str, Any]) -> Check:
    if not isinstance(d, Mapping) or "type" not in d:
        raise InvalidInputError(
            f"a gate check is a mapping with a 'type' ({', '.join(CHECK_TYPES)}), not {d!r}"
        )
    cls = CHECK_TYPES.get(str(d["type"]))
    if cls is None:
        raise InvalidInputError(
            f"unknown gate check type {d['type']!r}; known: {', '.join(CHECK_TYPES)}"
        )
    args = {k: v for k, v in d.items() if k != "type"}
    try:
        check: Check = cls(**args)
    except TypeError as exc:
        raise InvalidInputError(f"gate check {d['type']!r}: {exc}") from None
    return check


@dataclass(frozen=True)
class Gate:
    """A named list of checks. ``target`` names the label column in the gate's data;
    ``slice_by`` is derived from the slice checks. ``champion_alias`` is the alias whose
    version the candidate is compared with (default: the alias being moved)."""

    checks: tuple[Check, ...]
    target: str | None = None
    name: str = "gate"
    champion_alias: str | None = None

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
        return {
            "name": self.name,
            "target": self.target,
            "champion_alias": self.champion_alias,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Gate:
        if not isinstance(d, Mapping):
            raise InvalidInputError("a gate definition is a mapping with 'checks'")
        unknown = set(d) - {"name", "target", "champion_alias", "checks"}
        if unknown:
            raise InvalidInputError(
                f"unknown gate key(s) {', '.join(sorted(unknown))}; allowed: name, target, "
                "champion_alias, checks"
            )
        checks = d.get("checks")
        if not isinstance(checks, list):
            raise InvalidInputError("a gate's 'checks' must be a list")
        return cls(
            tuple(check_from_dict(c) for c in checks),
            target=d.get("target"),
            name=str(d.get("name", "gate")),
            champion_alias=d.get("champion_alias"),
        )

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
