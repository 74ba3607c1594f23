from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import polars as pl
import pytest

from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.data.catalog import Catalog, ContentAlreadyStoredWarning
from loopml.data.profile import profile
from loopml.data.schema import infer_schema
from loopml.store.workspace import Workspace


@pytest.fixture
def workspace(any_workspace: Workspace) -> Workspace:
    """Every catalog test runs on SQLite and on a real PostgreSQL server."""
    return any_workspace


def test_add_get_and_read_back(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    ds = Catalog(workspace).add(
        "flights",
        jan_feb,
        description="Jan-Feb",
        owner="ops",
        tags=["faa"],
        column_descriptions={"temp": "°F"},
    )
    assert (ds.name, ds.version, ds.num_rows, ds.num_columns) == ("flights", 1, jan_feb.height, 18)
    assert ds.digest.startswith("b3:") and ds.schema_version == 1
    assert ds.to_polars().equals(jan_feb)
    assert ds.to_arrow().num_rows == jan_feb.height
    assert ds.to_pandas().shape == jan_feb.shape
    assert ds.scan().select(pl.len()).collect().item() == jan_feb.height
    assert ds.profile == profile(jan_feb)
    assert ds.schema == infer_schema(ds.profile)
    got = Catalog(workspace).get("flights")
    assert got == ds
    assert Catalog(workspace).get("flights:1") == ds
    assert Catalog(workspace).get("flights", digest=ds.digest) == ds
    info = Catalog(workspace).list_datasets()[0]
    assert (info.owner, info.tags, info.column_descriptions) == ("ops", {"faa": ""}, {"temp": "°F"})
    assert ds.description == "Jan-Feb"


def test_identical_content_returns_existing_version(
    workspace: Workspace, jan_feb: pl.DataFrame
) -> None:
    first = Catalog(workspace).add("flights", jan_feb, description="Jan-Feb", tags=["faa"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when nothing else was asked for
        again = Catalog(workspace).add("flights", jan_feb.to_pandas())
    assert again.version == first.version == 1
    # A new description for identical content changes nothing and says so.
    with pytest.warns(ContentAlreadyStoredWarning, match=r"flights:1 already holds.*'Jan-Feb'"):
        same = Catalog(workspace).add("flights", jan_feb, description="other", owner="x")
    assert same == first and same.description == "Jan-Feb"
    info = Catalog(workspace).info("flights")
    assert (info.description, info.owner, info.tags) == ("Jan-Feb", None, {"faa": ""})
    other = Catalog(workspace).add("flights", jan_feb.head(10))
    assert other.version == 2
    assert [d.version for d in Catalog(workspace).versions("flights")] == [1, 2]
    assert Catalog(workspace).get("flights").version == 2


def test_append_shares_files_and_merges_profile(
    workspace: Workspace, flights: pl.DataFrame
) -> None:
    march = flights.filter(pl.col("month") == 3)
    base = Catalog(workspace).add("flights", flights.filter(pl.col("month") <= 2))
    grown = Catalog(workspace).append("flights", march)
    assert grown.version == 2 and grown.num_rows == base.num_rows + march.height
    assert grown.files[0] == base.files[0] and len(grown.files) == 2
    merged = grown.profile["temp"].numeric
    whole = profile(flights.filter(pl.col("month") <= 3))["temp"].numeric
    assert merged is not None and whole is not None
    assert merged.histogram == whole.histogram
    assert merged.std == pytest.approx(whole.std, rel=1e-12)
    assert grown.to_polars().height == grown.num_rows
    upstream = grown.lineage("upstream")
    assert base.artifact_id in upstream.artifacts
    assert any(e.kind == "data.append" for e in upstream.executions.values())
    with pytest.raises(InvalidInputError, match="missing column"):
        Catalog(workspace).append("flights", march.drop("temp"))
    with pytest.raises(InvalidInputError, match="temp is String, expected Float64"):
        Catalog(workspace).append("flights", march.with_columns(pl.col("temp").cast(pl.String)))
    with pytest.raises(InvalidInputError, match="no rows"):
        Catalog(workspace).append("flights", march.head(0))


def test_sources_files_folders_csv_and_urls(
    workspace: Workspace, jan_feb: pl.DataFrame, tmp_path: Path
) -> None:
    small = jan_feb.head(2000)
    parquet = tmp_path / "a.parquet"
    small.write_parquet(parquet)
    from_file = Catalog(workspace).add("p", str(parquet))
    assert from_file.to_polars().equals(small)
    # A Parquet file is stored as it is: same bytes, same blob.
    assert from_file.files[0].size == parquet.stat().st_size

    csv = tmp_path / "a.csv"
    small.write_csv(csv)
    from_csv = Catalog(workspace).add("c", csv)
    assert from_csv.num_rows == 2000 and from_csv.to_polars()["carrier"].equals(small["carrier"])

    folder = tmp_path / "folder"
    folder.mkdir()
    small.head(1000).write_parquet(folder / "1.parquet")
    small.tail(1000).write_parquet(folder / "2.parquet")
    (folder / "README.txt").write_text("ignored")
    from_folder = Catalog(workspace).add("f", folder)
    assert len(from_folder.files) == 2 and from_folder.to_polars().equals(small)

    fs = fsspec.filesystem("memory")
    with fs.open("/bucket/x.parquet", "wb") as f:
        small.write_parquet(f)
    from_url = Catalog(workspace).add("u", "memory://bucket/x.parquet")
    assert from_url.to_polars().equals(small)


def test_bad_sources(workspace: Workspace, jan_feb: pl.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no file or folder"):
        Catalog(workspace).add("x", tmp_path / "missing.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="neither Parquet nor CSV"):
        Catalog(workspace).add("x", tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="has no Parquet or CSV"):
        Catalog(workspace).add("x", empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    jan_feb.head(5).write_parquet(mixed / "1.parquet")
    jan_feb.head(5).drop("temp").write_parquet(mixed / "2.parquet")
    with pytest.raises(InvalidInputError, match=r"missing \['temp'\]"):
        Catalog(workspace).add("x", mixed)
    with pytest.raises(InvalidInputError, match="not a valid dataset name"):
        Catalog(workspace).add("bad name:1", jan_feb)
    with pytest.raises(InvalidInputError, match=r"tags must be a mapping .* or a list"):
        Catalog(workspace).add("x", jan_feb, tags="faa")
    with pytest.raises(InvalidInputError, match="does not have"):
        Catalog(workspace).add("x", jan_feb, column_descriptions={"nope": "?"})
    assert Catalog(workspace).list_datasets() == []


def test_truncated_parquet_source_is_rejected(
    workspace: Workspace, jan_feb: pl.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    jan_feb.write_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="truncated or corrupted"):
        Catalog(workspace).add("t", path)
    assert Catalog(workspace).list_datasets() == []


def test_tampered_artifact_is_detected(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    ds = Catalog(workspace).add("flights", jan_feb.head(5000))
    Catalog(workspace).append("flights", jan_feb.tail(100))
    part = ds.files[0]
    stored = workspace.artifacts.path_of(part.digest)
    assert stored.startswith(os.fspath(workspace.artifacts.root))
    with open(stored, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    fresh = Catalog(workspace).get("flights", 1)
    with pytest.raises(IntegrityError, match=r"dataset flights:1 file part-00000\.parquet"):
        fresh.to_polars()
    with pytest.raises(IntegrityError, match=r"flights:2 file part-00000\.parquet"):
        Catalog(workspace).get("flights", 2).to_arrow()
    report = Catalog(workspace).verify()
    # The shared part is reported once for each version that holds it.
    assert not report.ok and len(report.problems) == 2
    assert "flights:1 file part-00000.parquet" in report.problems[0]
    assert "flights:2 file part-00000.parquet" in report.problems[1]
    # Truncation is caught the same way.
    with open(stored, "r+b") as f:
        f.truncate(10)
    with pytest.raises(IntegrityError, match=r"flights:1 file part-00000\.parquet"):
        fresh.verify()


def test_tampered_profile_and_schema(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    ds = Catalog(workspace).add("flights", jan_feb.head(100))
    assert ds.profile_digest is not None
    Path(workspace.artifacts.path_of(ds.profile_digest)).write_text("{}")
    with pytest.raises(IntegrityError, match="dataset flights:1 profile"):
        Catalog(workspace).get("flights").profile  # noqa: B018
    schema_digest = Catalog(workspace).schema_versions("flights")[0].digest
    Path(workspace.artifacts.path_of(schema_digest)).write_text("columns: []")
    with pytest.raises(IntegrityError, match="dataset flights schema v1"):
        Catalog(workspace).get_schema("flights")
    assert len(Catalog(workspace).verify("flights").problems) == 2


def test_lookup_errors(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        Catalog(workspace).get("nope")
    Catalog(workspace).add("flights", jan_feb.head(10))
    with pytest.raises(NotFoundError, match="has no version 7"):
        Catalog(workspace).get("flights", 7)
    with pytest.raises(InvalidInputError, match="positive whole number"):
        Catalog(workspace).get("flights:x")
    with pytest.raises(InvalidInputError, match="not a loopml digest"):
        Catalog(workspace).get("flights", digest="abc")
    with pytest.raises(NotFoundError, match="has no a version with digest"):
        Catalog(workspace).get("flights", digest="b3:" + "0" * 64)


def test_search_update_and_schema_versions(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    Catalog(workspace).add("flights", jan_feb.head(100), description="NYC departures", tags=["faa"])
    Catalog(workspace).add("weather", jan_feb.select("temp", "dewp").head(100), tags=["noaa"])
    assert [d.name for d in Catalog(workspace).search("nyc")] == ["flights"]
    assert [d.name for d in Catalog(workspace).search(tag="noaa")] == ["weather"]
    assert [d.name for d in Catalog(workspace).search(column="dewp")] == ["flights", "weather"]
    assert [d.name for d in Catalog(workspace).search(column="carrier")] == ["flights"]
    info = Catalog(workspace).update("weather", owner="met", column_descriptions={"temp": "°F"})
    assert info.owner == "met" and info.column_descriptions == {"temp": "°F"}

    schema = Catalog(workspace).get_schema("flights")
    edited = schema.with_column("temp", min=-40.0, max=130.0)
    assert Catalog(workspace).save_schema("flights", edited, note="wider") == 2
    assert Catalog(workspace).save_schema("flights", edited) == 2  # unchanged: same version
    assert Catalog(workspace).get_schema("flights").column("temp").max == 130.0
    assert Catalog(workspace).get_schema("flights", 1) == schema
    # New versions use the curated schema rather than inferring again.
    ds = Catalog(workspace).add("flights", jan_feb.head(200))
    assert ds.schema_version == 2 and ds.schema == edited
    assert [v.note for v in Catalog(workspace).schema_versions("flights")] == [
        "inferred from the first version's profile",
        "wider",
    ]


def test_runs_link_to_versions(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    ds = Catalog(workspace).add("flights", jan_feb.head(100))
    run = workspace.lineage.add_execution("run", name="train")
    workspace.lineage.link(run.id, ds.artifact_id, "input", "train")
    graph = ds.lineage("downstream")
    assert run.id in graph.executions


def test_concurrent_adds_all_get_a_version(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    """20 writers at once, each with its own connection pool as separate processes have:
    every add succeeds, the versions are 1..20, and identical content shares one."""
    url = workspace.engine.url.render_as_string(hide_password=False)
    n = 20
    barrier = threading.Barrier(n, timeout=60)
    tables = [jan_feb.slice(i * 10, 10) for i in range(n - 2)] + [jan_feb.head(3)] * 2

    def add(i: int) -> tuple[int, str]:
        ws = Workspace(url, os.fspath(workspace.artifacts.root))
        try:
            barrier.wait()
            description = f"writer {min(i, n - 2)}"  # the two identical tables agree
            ds = Catalog(ws).add("flights", tables[i], description=description)
            return ds.version, ds.digest
        finally:
            ws.close()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(add, range(n), timeout=300))
    versions = Catalog(workspace).versions("flights")
    assert [d.version for d in versions] == list(range(1, n))
    by_digest = {d.digest: d.version for d in versions}
    assert all(by_digest[digest] == version for version, digest in results)
    # The two identical tables were given the same version.
    assert results[-1] == results[-2]


def test_descriptions_per_version_and_tags_as_mappings(
    workspace: Workspace, jan_feb: pl.DataFrame
) -> None:
    cat = Catalog(workspace)
    v1 = cat.add("flights", jan_feb.head(10), description="first ten", tags={"source": "faa"})
    v2 = cat.add("flights", jan_feb.head(20), description="first twenty")
    v3 = cat.append("flights", jan_feb.slice(20, 5), description="plus five")
    assert [d.description for d in cat.versions("flights")] == [
        "first ten",
        "first twenty",
        "plus five",
    ]
    assert (v1.description, v2.description, v3.description) == (
        "first ten",
        "first twenty",
        "plus five",
    )
    assert cat.info("flights").tags == {"source": "faa"}
    assert cat.update("flights", tags=["raw", "nyc"]).tags == {"raw": "", "nyc": ""}
    assert [d.name for d in cat.search(tag="nyc")] == ["flights"]
    with pytest.raises(InvalidInputError, match="tag names must be non-empty"):
        cat.update("flights", tags={"": "x"})
    with pytest.raises(InvalidInputError, match="description must be a string"):
        cat.add("flights", jan_feb.head(3), description=3)  # type: ignore[arg-type]


def test_append_recomputes_a_profile_made_with_an_older_hash(
    workspace: Workspace, jan_feb: pl.DataFrame
) -> None:
    from dataclasses import replace

    import sqlalchemy as sa

    from loopml.store.metadata.tables import dataset_versions

    cat = Catalog(workspace)
    base = cat.add("flights", jan_feb.head(3000))
    # A profile as an older release stored it: sketches from another hash.
    old = replace(base.profile, hash_id="polars-1.9.0-seed0")
    digest = workspace.artifacts.put_bytes(old.to_json().encode()).digest
    with workspace.write_engine.begin() as conn:
        conn.execute(
            sa.update(dataset_versions)
            .where(dataset_versions.c.digest == base.digest)
            .values(profile_digest=digest)
        )
    grown = cat.append("flights", jan_feb.slice(3000, 500))
    whole = profile(jan_feb.head(3500))
    assert grown.profile.hash_id == whole.hash_id
    # Same hash, same registers: the merged sketch is exactly the whole table's.
    assert grown.profile["temp"].hll == whole["temp"].hll
    assert grown.profile["temp"].distinct == whole["temp"].distinct


def test_the_fluent_api_binds_the_catalog(workspace: Workspace, jan_feb: pl.DataFrame) -> None:
    import inspect

    from loopml.api import datasets as api

    ds = Catalog(workspace).add("flights", jan_feb.head(10))
    assert Catalog(workspace).get("flights:1") == ds == Catalog(workspace).get("flights")
    # The fluent API binds Catalog's methods: same parameters, same docs.
    assert (
        list(inspect.signature(api.add).parameters)
        == list(inspect.signature(Catalog.add).parameters)[1:]
    )
    assert api.add.__doc__ == Catalog.add.__doc__
