"""``lm.models`` through a team server: register, load, get, versions, history, promote,
rollback, policies, evaluations and cards.

A model is saved here into the local content-addressed cache exactly as local mode saves
it, uploaded file by file, and registered by its digest; loading downloads the version's
tree into the cache and loads it from verified bytes, as local mode does from the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from loopml.api.remote.artifacts import cache_store, download_tree, upload_tree
from loopml.api.remote.connection import Connection
from loopml.core import names
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.registry.artifact import load_model, save_model
from loopml.registry.evaluation import EvaluationResult
from loopml.registry.gates import Gate, GateResult
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import AliasEvent, ModelVersion, RegisteredModel
from loopml.registry.promotion import PromotionResult
from loopml.registry.signature import Signature


def _model(name: str) -> str:
    return f"/models/{quote(name, safe='')}"


def version_of(body: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(
        name=body["name"],
        version=int(body["version"]),
        id=body["id"],
        digest=body["digest"],
        artifact_id=body["artifact_id"],
        flavor=body["flavor"],
        signature=Signature.from_dict(body["signature"]),
        run_id=body.get("run_id"),
        dataset_artifact_ids=tuple(body.get("dataset_artifact_ids") or ()),
        code_version=body.get("code_version"),
        description=body.get("description", ""),
        tags=dict(body.get("tags") or {}),
        created_at=float(body["created_at"]),
        aliases=tuple(body.get("aliases") or ()),
        created_by=body.get("created_by"),
    )


def event_of(name: str, body: Mapping[str, Any]) -> AliasEvent:
    return AliasEvent(
        id=int(body["id"]),
        name=name,
        alias=body["alias"],
        action=body["action"],
        from_version=body.get("from_version"),
        to_version=body.get("to_version"),
        allowed=bool(body["allowed"]),
        reason=body["reason"],
        gate_result=body.get("gate_result"),
        execution_id=body.get("execution_id"),
        created_at=float(body["created_at"]),
        created_by=body.get("created_by"),
    )


class RemoteRegistry:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def register(
        self,
        name: str,
        model: Any,
        X: Any = None,
        *,
        flavor: str | None = None,
        run_id: str | None = None,
        dataset_artifact_ids: Sequence[str] = (),
        code_version: str | None = None,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        names.check_name(name, what="model name")
        store = cache_store()
        saved = save_model(store, model, X, flavor=flavor)
        upload_tree(self.connection, store, saved.digest)
        body = {
            "digest": saved.digest,
            "run_id": run_id,
            "dataset_artifact_ids": list(dataset_artifact_ids),
            "code_version": code_version,
            "description": description,
            "tags": {k: v if isinstance(v, str) else str(v) for k, v in (tags or {}).items()},
        }
        return version_of(self.connection.post_json(f"{_model(name)}/versions", body))

    def get_version(self, name: str, version: int) -> ModelVersion:
        names.check_name(name, what="model name")
        return version_of(self.connection.get_json(f"{_model(name)}/versions/{int(version)}"))

    def resolve(self, ref: str) -> ModelVersion:
        """``name@alias``, ``name:3`` or ``name`` (the latest version), as local mode."""
        return self.get_version(*self.resolve_number(ref))

    def resolve_number(self, ref: str) -> tuple[str, int]:
        """(name, version) ``ref`` names now: one request for an alias or the latest, none
        for ``name:3`` (a serving process asks this every few seconds)."""
        parsed = names.parse_ref(ref, "model reference")
        name = parsed.name
        if parsed.alias is not None:
            aliases = self.connection.get_json(f"{_model(name)}/aliases")
            if parsed.alias not in aliases:
                known = ", ".join(f"{a} -> {v}" for a, v in aliases.items()) or "none"
                raise NotFoundError(
                    f"model {name!r} has no alias {parsed.alias!r}; its aliases: {known}"
                )
            return name, int(aliases[parsed.alias])
        if parsed.version is None:
            latest = self.connection.get_json(_model(name))["latest_version"]
            if latest is None:
                raise NotFoundError(f"model {name!r} has no versions yet; register one first")
            return name, int(latest)
        return name, parsed.version

    def load(self, ref: str) -> LoadedModel:
        return self.load_version(self.resolve(ref), ref)

    def load_version(self, mv: ModelVersion, ref: str | None = None) -> LoadedModel:
        """The version's tree fetched into the local cache (what it lacks, hash-checked)
        and loaded from there."""
        store = cache_store()
        download_tree(self.connection, store, mv.digest)
        return load_model(store, mv.digest, what=f"model {mv.ref}", ref=ref or mv.ref)

    def versions(self, name: str) -> list[ModelVersion]:
        names.check_name(name, what="model name")
        return [version_of(b) for b in self.connection.get_json(f"{_model(name)}/versions")]

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        names.check_name(name, what="model name")
        params = None if alias is None else {"alias": names.check_alias(alias)}
        found = self.connection.get_json(f"{_model(name)}/history", params=params)
        return [event_of(name, b) for b in found]

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        *,
        gate: Gate | None = None,
        data: Any = None,
        reason: str = "",
        force: bool = False,
    ) -> PromotionResult:
        """The server runs the gate; ``data`` is a dataset of its catalog (``"name:3"``)."""
        names.check_name(name, what="model name")
        names.check_alias(alias)
        if data is not None and not isinstance(data, str):
            raise InvalidInputError(
                "in remote mode data= names a dataset of the server's catalog (e.g. "
                "'flights:3'); add the table with lm.datasets.add on the server's workspace"
            )
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidInputError(f"a model version is a positive integer, not {version!r}")
        body = {
            "version": version,
            "reason": reason,
            "gate": None if gate is None else gate.to_dict(),
            "data": data,
            "force": force,
        }
        out = self.connection.post_json(f"{_model(name)}/aliases/{quote(alias, safe='')}", body)
        event = event_of(name, out["event"])
        return PromotionResult(
            name,
            alias,
            version,
            out.get("from_version"),
            bool(out["allowed"]),
            out["reason"],
            None if event.gate_result is None else GateResult.from_dict(event.gate_result),
            event,
        )

    def rollback(self, name: str, alias: str = "champion", *, reason: str = "") -> AliasEvent:
        names.check_name(name, what="model name")
        names.check_alias(alias)
        path = f"{_model(name)}/aliases/{quote(alias, safe='')}/rollback"
        return event_of(name, self.connection.post_json(path, {"reason": reason}))

    def set_policy(self, name: str, gate: Gate | None) -> None:
        names.check_name(name, what="model name")
        body = {"gate": None if gate is None else gate.to_dict()}
        self.connection.request("PUT", f"{_model(name)}/policy", json=body)

    def policy(self, name: str) -> Gate | None:
        names.check_name(name, what="model name")
        document = self.connection.get_json(f"{_model(name)}/policy")["gate"]
        return None if document is None else Gate.from_dict(document)

    def evaluate(
        self,
        ref: str,
        data: str,
        target: str,
        *,
        slice_by: Sequence[str] = (),
        run_id: str | None = None,
    ) -> EvaluationResult:
        """The server scores the registered model ``ref`` on its dataset ``data``."""
        names.parse_ref(ref, "model reference")
        body = {
            "model": ref,
            "data": data,
            "target": target,
            "slice_by": list(slice_by),
            "run_id": run_id,
        }
        out = self.connection.post_json("/evaluations", body)
        return EvaluationResult.from_dict(out["evaluation"], digest=out["digest"])

    def card(self, ref: str) -> str:
        name, version = self.resolve_number(ref)
        return str(self.connection.get_json(f"{_model(name)}/versions/{version}/card")["markdown"])

    def models(self) -> list[RegisteredModel]:
        return [
            RegisteredModel(
                name=b["name"],
                description=b.get("description") or "",
                tags=dict(b.get("tags") or {}),
                created_at=float(b["created_at"]),
                latest_version=b.get("latest_version"),
                aliases={str(k): int(v) for k, v in (b.get("aliases") or {}).items()},
            )
            for b in self.connection.get_json("/models")
        ]
