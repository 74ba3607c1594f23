"""The checks a gate is made of, declared once: each is a validated record (a pydantic
dataclass) and all of them form one union told apart by ``type``, so a gate document is
read, and refused with the field's name, by pydantic rather than by hand.

A new check is a class here with a ``type`` literal, ``describe`` and ``run``, added to
:data:`AnyCheck`.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Discriminator, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from loopml.core import declared
from loopml.core.errors import InvalidInputError
from loopml.registry.artifact import example_table
from loopml.registry.evaluation import EvaluationResult, higher_is_better
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import ModelVersion
from loopml.registry.table import head, to_arrow

# Strict: a quoted number in YAML ('0.7') is a mistake to report, not a string to coerce.
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Text = Annotated[str, Strict()]
DECLARED = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict, as stored in the alias history (JSON)."""

    check: str
    description: str
    value: float | str | None
    limit: str
    passed: bool
    detail: str = ""


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


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _limit_text(lo: float | None, hi: float | None) -> str:
    parts = [f">= {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else ""]
    return " and ".join(p for p in parts if p)


def _check_range(metric: str, lo: float | None, hi: float | None) -> None:
    higher_is_better(metric)  # validates the name
    if lo is None and hi is None:
        raise InvalidInputError(f"a threshold on {metric!r} needs min or max (or both)")


@dataclass(frozen=True, config=DECLARED)
class Threshold:
    """The candidate's metric lies within [min, max]."""

    metric: Text
    min: Number | None = None
    max: Number | None = None
    type: Literal["threshold"] = field(default="threshold", kw_only=True)
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


@dataclass(frozen=True, config=DECLARED)
class NoWorseThanChampion:
    """The candidate is at most ``max_drop`` worse than the champion on the same data."""

    metric: Text
    max_drop: Number = 0.0
    type: Literal["no_worse_than_champion"] = field(default="no_worse_than_champion", kw_only=True)
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


@dataclass(frozen=True, config=DECLARED)
class SliceThreshold:
    """Every slice by ``column`` with at least ``min_rows`` rows meets the limit."""

    column: Text
    metric: Text
    min: Number | None = None
    max: Number | None = None
    min_rows: Count = 30
    type: Literal["slice_threshold"] = field(default="slice_threshold", kw_only=True)
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


@dataclass(frozen=True, config=DECLARED)
class SchemaCompatible:
    """Input that the champion accepts is accepted by the candidate, with the same output."""

    type: Literal["schema_compatible"] = field(default="schema_compatible", kw_only=True)
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


@dataclass(frozen=True, config=DECLARED)
class SmokeTest:
    """The candidate loads from verified bytes and answers a sample within the budget.

    The latency is the median of ``repeats`` calls after one warm-up call, in ms.
    """

    max_latency_ms: Number = 1000.0
    rows: Count = 100
    repeats: Count = 5
    type: Literal["smoke_test"] = field(default="smoke_test", kw_only=True)
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


AnyCheck = Annotated[
    Threshold | NoWorseThanChampion | SliceThreshold | SchemaCompatible | SmokeTest,
    Discriminator("type"),
]
CHECKS: tuple[type[Any], ...] = (
    Threshold,
    NoWorseThanChampion,
    SliceThreshold,
    SchemaCompatible,
    SmokeTest,
)
_CHECK: TypeAdapter[AnyCheck] = TypeAdapter(AnyCheck)


def check_from_dict(d: Mapping[str, Any]) -> AnyCheck:
    """One check from its mapping (``{"type": "threshold", ...}``)."""
    try:
        return _CHECK.validate_python(d)
    except ValidationError as exc:
        raise InvalidInputError(explain(exc, "gate check")) from None


def check_to_dict(check: AnyCheck) -> dict[str, Any]:
    return dict(_CHECK.dump_python(check, mode="json"))


def explain(exc: ValidationError, what: str) -> str:
    """A validation error as one line per problem, each naming its field."""
    known = ", ".join(c.__dataclass_fields__["type"].default for c in CHECKS)

    def unknown_type(where: str, err: dict[str, Any]) -> str | None:
        if err["type"] not in ("union_tag_invalid", "union_tag_not_found"):
            return None
        tag = err.get("ctx", {}).get("tag")
        found = f"unknown gate check type {tag!r}" if tag else "a gate check needs a 'type'"
        return f"{where}{found}; known: {known}"

    return declared.explain(exc, what, unknown_type)


def refuse_as_invalid_input(cls: type[Any], what: str) -> None:
    """Make building ``cls`` in Python raise InvalidInputError, as reading a document does."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise InvalidInputError(explain(exc, what)) from None

    cls.__init__ = __init__


for _check in CHECKS:
    refuse_as_invalid_input(_check, f"gate check {_check.__name__}")
