"""Turning a dataset source into local Parquet files ready to be stored.

Parquet files are used as they are (no rewrite, so adding a large file costs one hash and
one copy); CSV is converted by Polars' streaming engine, so CSV larger than memory works;
in-memory tables are written once. fsspec URLs are downloaded first.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from loopml.core.errors import InvalidInputError, NotFoundError, StoreError
from loopml.data.tables import check_columns, to_polars

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


@dataclass(frozen=True)
class StagedFile:
    path: str  # a local Parquet file
    origin: str  # what the user gave, for messages
    num_rows: int
    schema: dict[str, str]


def read_table(source: str | os.PathLike[str], **csv_options: Any) -> pl.DataFrame:
    """A Parquet/CSV file, folder of them or fsspec URL read into one Polars frame."""
    with tempfile.TemporaryDirectory(prefix="loopml-read-") as workdir:
        staged = stage(source, workdir, csv_options=csv_options)
        try:
            frames = [pl.read_parquet(f.path) for f in staged]
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InvalidInputError(
                f"cannot read {os.fspath(source)!r} (truncated or corrupted?): {exc}"
            ) from None
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def describe_source(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"{type(source).__module__.split('.')[0]} {type(source).__name__}"


def stage(
    source: Any, workdir: str, *, csv_options: dict[str, Any] | None = None
) -> list[StagedFile]:
    """Local Parquet files holding ``source``'s rows, in order."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if "://" in text and not text.startswith("file://"):
            return _stage_url(text, workdir, csv_options)
        return _stage_path(Path(text.removeprefix("file://")), workdir, csv_options)
    df = to_polars(source, what="the source table")
    out = os.path.join(workdir, f"table-{len(os.listdir(workdir))}.parquet")
    # Fixed settings so the same table always gives the same bytes (and digest).
    df.write_parquet(out, compression="zstd", statistics=True)
    return [_describe(out, describe_source(source))]


def _stage_path(path: Path, workdir: str, csv_options: dict[str, Any] | None) -> list[StagedFile]:
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and _suffix(p) is not None
        )
        if not files:
            raise InvalidInputError(
                f"folder {str(path)!r} has no Parquet or CSV files "
                f"({', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)})"
            )
        staged = [_stage_file(f, workdir, csv_options) for f in files]
        _check_same_schema(staged)
        return staged
    if not path.exists():
        raise NotFoundError(f"no file or folder at {str(path)!r}")
    return [_stage_file(path, workdir, csv_options)]


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for s in PARQUET_SUFFIXES + CSV_SUFFIXES:
        if name.endswith(s):
            return s
    return None


def _stage_file(path: Path, workdir: str, csv_options: dict[str, Any] | None) -> StagedFile:
    suffix = _suffix(path)
    if suffix is None:
        raise InvalidInputError(
            f"{str(path)!r} is neither Parquet nor CSV; supported file endings: "
            f"{', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)}"
        )
    if suffix in PARQUET_SUFFIXES:
        return _describe(str(path), str(path))
    out = os.path.join(workdir, f"csv-{len(os.listdir(workdir))}.parquet")
    options: dict[str, Any] = {"separator": "\t"} if suffix == ".tsv" else {}
    options.update(csv_options or {})
    try:
        pl.scan_csv(path, **options).sink_parquet(out, compression="zstd", statistics=True)
    except (pl.exceptions.PolarsError, OSError, TypeError) as exc:
        raise InvalidInputError(f"cannot read CSV file {str(path)!r}: {exc}") from None
    return _describe(out, str(path))


def _describe(path: str, origin: str) -> StagedFile:
    try:
        meta = pq.read_metadata(path)
        schema = pl.read_parquet_schema(path)
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InvalidInputError(
            f"{origin!r} is not a readable Parquet file (truncated or corrupted?): {exc}"
        ) from None
    check_columns(list(schema), origin)
    return StagedFile(path, origin, meta.num_rows, {k: str(v) for k, v in schema.items()})


def _check_same_schema(staged: list[StagedFile]) -> None:
    first = staged[0]
    for f in staged[1:]:
        if f.schema != first.schema:
            raise InvalidInputError(
                f"{f.origin!r} does not have the same columns and types as {first.origin!r}: "
                f"{_schema_diff(first.schema, f.schema)}"
            )


def _schema_diff(a: dict[str, str], b: dict[str, str]) -> str:
    parts = []
    if missing := [c for c in a if c not in b]:
        parts.append(f"missing {missing}")
    if extra := [c for c in b if c not in a]:
        parts.append(f"extra {extra}")
    if changed := [f"{c}: {a[c]} -> {b[c]}" for c in a if c in b and a[c] != b[c]]:
        parts.append(f"changed {changed}")
    if not parts and list(a) != list(b):
        parts.append("columns in another order")
    return "; ".join(parts)


def _stage_url(url: str, workdir: str, csv_options: dict[str, Any] | None) -> list[StagedFile]:
    from fsspec.core import url_to_fs

    try:
        fs, root = url_to_fs(url)
        if not fs.exists(root):
            raise NotFoundError(f"nothing at {url!r}")
        local = os.path.join(workdir, "download")
        if fs.isdir(root):
            os.makedirs(local, exist_ok=True)
            for remote in sorted(fs.find(root)):
                rel = remote[len(root.rstrip("/")) + 1 :]
                target = os.path.join(local, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fs.get_file(remote, target)
        else:
            os.makedirs(local, exist_ok=True)
            local = os.path.join(local, os.path.basename(root.rstrip("/")))
            fs.get_file(root, local)
    except (ImportError, ValueError) as exc:
        raise InvalidInputError(f"cannot open {url!r}: {exc}") from None
    except OSError as exc:
        raise StoreError(f"cannot download {url!r}: {exc}") from None
    staged = _stage_path(Path(local), workdir, csv_options)
    return [StagedFile(s.path, url, s.num_rows, s.schema) for s in staged]
