"""The one place serving touches ``loopml.registry``: resolve, load, predict, watch aliases.

Everything else in the package sees :class:`ServedModel` and :class:`ModelSource`, so a
change in the registry's API is absorbed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.core.errors import InvalidInputError
from loopml.registry.artifact import example_table
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.registry.signature import Signature
from loopml.serving.errors import SignatureMismatchError
from loopml.serving.json_columns import RowReader
from loopml.store.workspace import Workspace


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch: labels (or values) and, for classifiers, probabilities."""

    labels: np.ndarray
    proba: np.ndarray | None

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    def slice(self, start: int, stop: int) -> Prediction:
        return Prediction(
            self.labels[start:stop], None if self.proba is None else self.proba[start:stop]
        )


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: ``name@alias`` follows the alias, ``name:3`` is pinned."""

    text: str
    name: str
    alias: str | None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if not isinstance(text, str) or not text or text.count("@") + text.count(":") > 1:
            raise InvalidInputError(
                f"{text!r} is not a model reference; use 'name', 'name:3' or 'name@alias'"
            )
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(text, name, alias)
        return cls(text, text.split(":", 1)[0], None)


class ServedModel:
    """One loaded model version and what the protocol needs to describe it."""

    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        version: int,
        ref: str,
        *,
        artifact_id: str | None = None,
    ) -> None:
        self._loaded = loaded
        self.name = name
        self.version = version
        self.ref = ref
        self.digest = loaded.digest or ""
        # The model version's artifact in the lineage graph: prediction logs link to it.
        self.artifact_id = artifact_id
        self.flavor = loaded.flavor.name
        self.input_schema = loaded.input_schema
        self.row_reader = None if self.input_schema is None else RowReader(self.input_schema)

    def __repr__(self) -> str:
        return f"ServedModel({self.name}:{self.version} via {self.ref})"

    @property
    def signature(self) -> Signature:
        return self._loaded.signature

    @property
    def columns(self) -> list[str]:
        return self._loaded.signature.columns

    def column_type(self, name: str) -> str:
        return self._loaded.signature.column(name).type

    @property
    def output_type(self) -> str:
        return self._loaded.signature.output.type

    @property
    def classes(self) -> list[Any] | None:
        return self._loaded.classes

    @property
    def has_proba(self) -> bool:
        return self._loaded.has_proba

    def check(self, table: pa.Table) -> pa.Table:
        """The table conformed to the signature (:meth:`LoadedModel.conform`); a table
        the model cannot take is the client's mistake, answered 422."""
        try:
            return self._loaded.conform(table, model=f"{self.name}:{self.version}")
        except InvalidInputError as exc:
            raise SignatureMismatchError(str(exc)) from None

    def predict(self, table: pa.Table) -> Prediction:
        """Predict a checked table (the output of :meth:`check`, possibly concatenated)."""
        labels, proba = self._loaded.predict_conformed(table)
        return Prediction(labels, proba)

    def example(self) -> pa.Table | None:
        try:
            return example_table(self._loaded)
        except InvalidInputError:
            return None


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP/BLAS threads for the calling thread's model calls.

    Libraries size their thread pools for big inputs; on the small batches a server sees
    the fork/join cost dominates (about 1 ms per boosting iteration for gradient boosting).
    One thread per model call, with requests batched, is faster and leaves cores for HTTP.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


class ModelSource:
    """The registry of one workspace, seen from a server."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._registry = Registry(workspace)

    def resolve_version(self, ref: str) -> tuple[str, int]:
        """(name, version) ``ref`` points to now; raises NotFoundError if it points nowhere."""
        mv = self._registry.resolve(ref)
        return mv.name, mv.version

    def loop_canary(self, ref: str) -> tuple[str, float] | None:
        """(loop, percent) of the retraining loop that moves ``ref``'s alias, or None."""
        # Imported here: a server without a canary never needs the loop's records.
        from loopml.retraining.records import canary_share

        return canary_share(self.workspace, ref)

    def load(self, ref: str) -> ServedModel:
        """Load the version ``ref`` points to, from verified bytes."""
        name, version = self.resolve_version(ref)
        return self.load_version(name, version, ref)

    def load_version(self, name: str, version: int, ref: str) -> ServedModel:
        # Load by number: if the alias moves meanwhile, the version reported is still right.
        mv = self._registry.get_version(name, version)
        loaded = self._registry.load(mv.ref)
        return ServedModel(loaded, name, version, ref, artifact_id=mv.artifact_id)

    def versions(self, name: str) -> list[int]:
        return [v.version for v in self._registry.versions(name)]

    def packages(self, name: str, version: int) -> dict[str, str]:
        """Package versions the model was saved with (``python`` included)."""
        mv = self._registry.get_version(name, version)
        return dict(self._registry.metadata(mv).packages)

    def export(self, ref: str, target: Workspace, alias: str) -> tuple[str, int, int]:
        """Copy the version ``ref`` names into ``target`` and point ``alias`` at it.

        Returns (name, version here, version there). The copy is re-saved from verified
        bytes and tagged with its origin, so the bundled model is traceable.
        """
        name, version = self.resolve_version(ref)
        mv = self._registry.get_version(name, version)
        loaded = self._registry.load(mv.ref)
        copied = Registry(target).register(
            name,
            loaded,
            description=mv.description,
            tags={**mv.tags, "exported_from": mv.ref, "exported_digest": mv.digest},
        )
        promote(target, name, copied.version, alias, reason=f"bundled copy of {mv.ref}")
        return name, version, copied.version
