"""A model ready to predict: the library's object behind one uniform, checked interface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.core.errors import InvalidInputError
from loopml.registry.conform import (
    MAX_PLANS,
    ConformPlan,
    ValueChecks,
    labels_are_argmax,
    plain_schema,
)
from loopml.registry.flavors import Flavor
from loopml.registry.flavors.base import ModelInput
from loopml.registry.signature import Signature

METADATA_FORMAT = "loopml.model/1"


@dataclass(frozen=True)
class ModelMetadata:
    """The contents of a model artifact's ``loopml-model.yaml``."""

    flavor: str
    flavor_info: dict[str, Any]
    signature: Signature
    packages: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    has_proba: bool = False
    created_at: float = 0.0
    input_example: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "flavor": self.flavor,
            "flavor_info": self.flavor_info,
            "signature": self.signature.to_dict(),
            "packages": self.packages,
            "params": self.params,
            "has_proba": self.has_proba,
            "created_at": self.created_at,
            "input_example": self.input_example,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str) -> ModelMetadata:
        if not isinstance(d, Mapping) or d.get("format") != METADATA_FORMAT:
            raise InvalidInputError(
                f"{what} is not a loopml model artifact (expected format {METADATA_FORMAT!r})"
            )
        try:
            return cls(
                flavor=str(d["flavor"]),
                flavor_info=dict(d["flavor_info"]),
                signature=Signature.from_dict(d["signature"]),
                packages={str(k): str(v) for k, v in d.get("packages", {}).items()},
                params=dict(d.get("params") or {}),
                has_proba=bool(d.get("has_proba", False)),
                created_at=float(d.get("created_at", 0.0)),
                input_example=d.get("input_example"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{what} has malformed metadata: {exc}") from None


class LoadedModel:
    """``predict`` and ``predict_proba`` on pandas, polars or Arrow tables."""

    def __init__(
        self,
        native: Any,
        flavor: Flavor,
        metadata: ModelMetadata,
        *,
        digest: str | None = None,
        ref: str | None = None,
        input_example: pa.Table | None = None,
    ) -> None:
        self.native = native
        self.flavor = flavor
        self.metadata = metadata
        self.digest = digest
        self.ref = ref
        self.input_example = input_example
        # For conform/predict_conformed: the server's request path.
        self.input_schema = plain_schema(metadata.signature)
        self._plans: dict[pa.Schema, ConformPlan] = {}
        self._value_checks = ValueChecks(metadata.signature)
        self._labels_from_proba = labels_are_argmax(self)

    def __repr__(self) -> str:
        where = self.ref or self.digest or "unsaved"
        return f"LoadedModel({where}, flavor={self.flavor.name!r}, task={self.task!r})"

    @property
    def signature(self) -> Signature:
        return self.metadata.signature

    @property
    def task(self) -> str:
        return self.signature.output.task

    @property
    def classes(self) -> list[Any] | None:
        classes = self.signature.output.classes
        return None if classes is None else list(classes)

    @property
    def has_proba(self) -> bool:
        return self.metadata.has_proba

    def prepare(self, data: Any) -> ModelInput:
        return ModelInput(self.signature.prepare(data, what=f"input to {self}"), self.signature)

    def predict(self, data: Any) -> np.ndarray:
        return self.predict_prepared(self.prepare(data))

    def predict_proba(self, data: Any) -> np.ndarray:
        if not self.has_proba:
            raise InvalidInputError(
                f"{self} does not predict probabilities (a {self.task} model); use predict()"
            )
        proba = self.predict_proba_prepared(self.prepare(data))
        if proba is None:
            raise InvalidInputError(f"{self} does not predict probabilities; use predict()")
        return proba

    # The one path to the flavor, for input already conformed to the signature (the
    # inference server conforms each request once and predicts batches of them).
    def predict_prepared(self, prepared: ModelInput) -> np.ndarray:
        return self.flavor.predict(self.native, prepared, self.metadata.flavor_info)

    def predict_proba_prepared(self, prepared: ModelInput) -> np.ndarray | None:
        return self.flavor.predict_proba(self.native, prepared, self.metadata.flavor_info)

    # The request path of a server: each request conformed once, then batches of
    # conformed requests predicted, labels and probabilities together.
    def conform(self, table: pa.Table, *, model: str | None = None) -> pa.Table:
        """``table`` conformed to the signature; refuses missing, extra or mistyped
        columns, no rows, infinities, and missing values (null, NaN) in a column trained
        without them -- each named with its column and row."""
        conformed = self._conform(table, model or self.ref or "the model")
        self._value_checks.apply(conformed)
        return conformed

    def _conform(self, table: pa.Table, model: str) -> pa.Table:
        schema = self.input_schema
        if schema is not None and table.num_rows and table.schema.equals(schema):
            return table  # already the signature's columns and types: prepare would keep it
        columns = self.signature.columns
        expected = set(columns)
        extra = [c for c in table.column_names if c not in expected]
        if extra:
            shown = ", ".join(repr(c[:80]) for c in extra[:10])
            raise InvalidInputError(
                f"input has column(s) the model does not take: {shown}; "
                f"model {model} takes {columns}"
            )
        if table.num_rows == 0:
            raise InvalidInputError("input has no rows; send at least one row")
        plan = self._plans.get(table.schema)
        if plan is not None:
            conformed = plan.apply(table)
            if conformed is not None:
                return conformed
        conformed = self.signature.prepare(table, what="input")
        if plan is None and len(self._plans) < MAX_PLANS:
            derived = ConformPlan.derive(table.schema, conformed.schema)
            if derived is not None:
                self._plans[table.schema] = derived
        return conformed

    def predict_conformed(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and, for a model with them, probabilities of a table
        :meth:`conform` returned (or several, concatenated)."""
        data = ModelInput(table, self.signature)
        if self._labels_from_proba:
            # One model call instead of two: for these estimators predict() is exactly
            # classes_[argmax(predict_proba())], and each call has a large fixed cost.
            scores = np.asarray(self.predict_proba_prepared(data))
            classes = np.asarray(self.classes)
            return classes[np.argmax(scores, axis=1)], scores
        labels = np.asarray(self.predict_prepared(data))
        proba = None
        if self.has_proba:
            raw = self.predict_proba_prepared(data)
            proba = None if raw is None else np.asarray(raw)
        return labels, proba
