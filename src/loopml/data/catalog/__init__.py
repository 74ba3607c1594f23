"""The dataset catalog of a workspace: ``Catalog(ws)``, shaped like the model registry.

One module a concept: ``queries`` (get, versions, list, search), ``schemas`` (schema
versions), ``versions`` (adding and appending versions), ``entries`` (the catalog entry's
description, owner, tags). ``Catalog`` stacks them and adds editing and verifying.
"""

from __future__ import annotations

from collections.abc import Mapping

from loopml.core import clock
from loopml.core.progress import Progress, silent
from loopml.data.catalog.entries import Tags, check_descriptions, check_tags, upsert_entry
from loopml.data.catalog.entries import check_name as check_name
from loopml.data.catalog.entries import parse_ref as parse_ref
from loopml.data.catalog.queries import dataset_id_of
from loopml.data.catalog.schemas import SchemaVersion as SchemaVersion
from loopml.data.catalog.versions import ARTIFACT_KIND as ARTIFACT_KIND
from loopml.data.catalog.versions import CatalogVersions
from loopml.data.catalog.versions import ContentAlreadyStoredWarning as ContentAlreadyStoredWarning
from loopml.data.dataset import DatasetInfo
from loopml.store.verify import Verifier, VerifyReport, verify_store


class Catalog(CatalogVersions):
    """The dataset catalog of one workspace: versions, schemas, entries."""

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Tags | None = None,
        column_descriptions: Mapping[str, str] | None = None,
    ) -> DatasetInfo:
        """Edit the catalog entry; column descriptions are merged into the existing ones,
        tags replace the existing ones."""
        tag_map = check_tags(tags)
        if column_descriptions:
            check_descriptions(column_descriptions, self.get(name).profile)
        meta = {
            "description": description,
            "owner": owner,
            "tags": tag_map,
            "column_descriptions": column_descriptions,
        }
        with self.ws.write_engine.begin() as conn:
            dataset_id_of(conn, name)
            upsert_entry(conn, name, meta, clock.now())
        return self.info(name)

    def verify(
        self,
        name: str | None = None,
        *,
        all_artifacts: bool = True,
        progress: Progress = silent,
    ) -> VerifyReport:
        """Re-hash every stored part, profile and schema of every dataset version (of
        ``name``, or all); with ``all_artifacts`` (and no name) also every other blob in
        the store. Problems name the dataset version and file. ``progress`` hears
        ("re-hashing dataset blobs", done, total) as blobs are checked."""
        verifier = Verifier(self.ws)
        names = [name] if name is not None else [d.name for d in self.list_datasets()]
        found = [(n, self.versions(n), self.schema_versions(n)) for n in names]
        total = sum(
            1 + len(ds.files) + bool(ds.profile_digest) for _, dss, _ in found for ds in dss
        ) + sum(len(svs) for _, _, svs in found)
        done = 0
        stage = "re-hashing dataset blobs"
        progress(stage, done, total)
        for n, dss, svs in found:
            for ds in dss:
                if verifier.check(ds.digest, f"dataset {ds.ref} manifest"):
                    for e in ds.files:
                        verifier.check(e.digest, f"dataset {ds.ref} file {e.path}")
                        done += 1
                        progress(stage, done, total)
                else:
                    done += len(ds.files)  # unreadable parts of a bad manifest are not checked
                done += 1
                if ds.profile_digest:
                    verifier.check(ds.profile_digest, f"dataset {ds.ref} profile")
                    done += 1
                progress(stage, done, total)
            for sv in svs:
                verifier.check(sv.digest, f"dataset {n} schema v{sv.version}")
                done += 1
                progress(stage, done, total)
        if name is None and all_artifacts:
            verify_store(self.ws, verifier, progress=progress)
        return verifier.report(sum(len(dss) for _, dss, _ in found))


__all__ = [
    "ARTIFACT_KIND",
    "Catalog",
    "ContentAlreadyStoredWarning",
    "SchemaVersion",
    "VerifyReport",
    "check_name",
    "parse_ref",
]
