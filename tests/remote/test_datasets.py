"""``lm.datasets`` through a team server: the server profiles and stores the version,
records the token's name, and the client reads the parts back verified; a fetched version
offers every attribute and method a local one does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import httpx
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import select

import loopml as lm
from loopml.api.remote import RemoteAccessError
from loopml.core import clock, hashing
from loopml.data.catalog import Catalog
from loopml.data.profile import Profile
from loopml.server import tokens
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.remote.conftest import CLIENT_VARS, start_loopml_server
from tests.server.conftest import stop

pytestmark = pytest.mark.slow

# A generous deadline: the machine running the suite may be busy.
http = httpx.Client(timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    http.close()


@dataclass(frozen=True)
class Server:
    url: str
    token: str  # write scope, named ci
    read_token: str
    db: str
    artifacts: str

    def workspace(self) -> Workspace:
        return Workspace(self.db, self.artifacts)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("datasets")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        token = tokens.create(ws, "ci", "write")
        read_token = tokens.create(ws, "dash", "read")
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield Server(url, token, read_token, db, artifacts)
    finally:
        stop(proc)


@pytest.fixture
def as_ci(server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Server:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", server.url)
    monkeypatch.setenv("LOOPML_TOKEN", server.token)
    monkeypatch.chdir(tmp_path)
    return server


def test_add_and_get_through_the_server(as_ci: Server, tmp_path: Path) -> None:
    url, token = as_ci.url, as_ci.token
    jan = pl.DataFrame({"dep_delay": [1.0, -3.0, 12.5], "carrier": ["UA", "AA", "UA"]})
    v1 = lm.datasets.add("flights", jan, description="January", owner="ops", tags=["raw"])
    assert (v1.name, v1.version, v1.num_rows, v1.created_by) == ("flights", 1, 3, "ci")
    assert_frame_equal(v1.to_polars(), jan)
    # A file is read here and uploaded as a table; identical content is the same version.
    path = tmp_path / "jan.parquet"
    jan.write_parquet(path)
    assert lm.datasets.add("flights", path).version == 1
    feb = jan.with_columns(pl.col("dep_delay") * 2)
    assert lm.datasets.add("flights", feb).version == 2
    got = lm.datasets.get("flights:1")
    assert_frame_equal(got.to_polars(), jan)
    assert got.description == "January" and got.created_by == "ci"
    assert got.profile.num_rows == 3 and got.verify() > 0
    latest = lm.datasets.get("flights")
    assert latest.version == 2 and latest.digest != v1.digest
    assert lm.datasets.get("flights", 1).digest == v1.digest
    # The page of the dataset says who added each version.
    page = http.get(f"{url}/datasets/flights", headers={"Authorization": f"Bearer {token}"})
    assert page.text.count('class="who">ci<') == 2


def test_a_file_is_sent_as_it_is_and_gives_the_version_local_mode_gives(
    as_ci: Server, tmp_path: Path
) -> None:
    flights = pl.DataFrame(
        {"dep_delay": [float(i % 37) for i in range(5000)], "hour": [i % 24 for i in range(5000)]}
    )
    # Written by another tool with its own settings: stored as it is, not rewritten.
    parquet = tmp_path / "flights.parquet"
    pq.write_table(flights.to_arrow(), parquet, compression="snappy", row_group_size=1000)
    csv = tmp_path / "flights.csv"
    flights.write_csv(csv)
    local = Workspace(f"sqlite:///{tmp_path / 'local.db'}", str(tmp_path / "local-artifacts"))
    try:
        for name, source in (("as-parquet", parquet), ("as-csv", csv)):
            remote = lm.datasets.add(name, source)
            here = Catalog(local).add(name, source)
            assert remote.digest == here.digest, name
            assert_frame_equal(remote.to_polars(), flights)
        part = lm.datasets.get("as-parquet").files[0]
        assert part.digest == hashing.digest_file(str(parquet))[0]
    finally:
        local.close()
    # A batch that does not fit is refused naming the upload, not a temp file on the server.
    with pytest.raises(lm.InvalidInputError, match=r"cannot append the upload b3:") as bad:
        lm.datasets.append("as-csv", pl.DataFrame({"dep_delay": ["late"]}))
    assert "/tmp" not in str(bad.value)


def test_bad_dataset_input_is_a_clear_error(as_ci: Server) -> None:
    url, token = as_ci.url, as_ci.token
    with pytest.raises(lm.NotFoundError):
        lm.datasets.get("nothing-here")
    with pytest.raises(lm.InvalidInputError):
        lm.datasets.get("flights@champion")
    with pytest.raises(lm.InvalidInputError, match="remote mode"):
        lm.datasets.add("flights", pl.DataFrame({"a": [1]}), progress=print)
    with pytest.raises(lm.InvalidInputError, match="name"):
        lm.datasets.add("bad\nname", pl.DataFrame({"a": [1]}))
    h = {"Authorization": f"Bearer {token}"}
    blob = b"not parquet"
    digest = hashing.digest_bytes(blob)
    assert http.put(f"{url}/api/v1/blobs/{digest}", content=blob, headers=h).status_code == 200
    r = http.post(f"{url}/api/v1/datasets/x/versions", json={"digest": digest}, headers=h)
    assert r.status_code == 400 and "not a Parquet file" in r.json()["error"]
    r = http.post(f"{url}/api/v1/datasets/x/versions", json={"digest": "b3:00"}, headers=h)
    assert r.status_code == 400


# Every public attribute of a dataset version; a new one must be added to the test below,
# which checks that a fetched version answers it as the server's own copy does.
SURFACE = {
    "name",
    "version",
    "digest",
    "num_rows",
    "num_columns",
    "created_at",
    "artifact_id",
    "profile_digest",
    "schema_version",
    "description",
    "properties",
    "created_by",
    "workspace",
    "ref",
    "files",
    "profile",
    "schema",
    "paths",
    "to_polars",
    "scan",
    "to_arrow",
    "to_pandas",
    "verify",
    "lineage",
}


def test_a_fetched_version_answers_as_the_servers_own(as_ci: Server) -> None:
    public = {n for n in dir(lm.DatasetVersion) if not n.startswith("_")}
    assert public | {f.name for f in fields(lm.DatasetVersion)} == SURFACE
    jan = pl.DataFrame({"delay": [1.0, None, 12.5], "carrier": ["UA", "AA", "UA"]})
    feb = pl.DataFrame({"delay": [4.0, 7.5], "carrier": ["B6", "UA"]})
    lm.datasets.add("surface", jan)
    lm.datasets.append("surface", feb)
    remote = lm.datasets.get("surface:2")
    ws = as_ci.workspace()
    try:
        local = Catalog(ws).get("surface", 2)
        for field in sorted(SURFACE - {"workspace", "properties", "paths", "lineage"}):
            mine, theirs = getattr(remote, field), getattr(local, field)
            if callable(mine):
                mine, theirs = mine(), theirs()
            if isinstance(mine, pl.LazyFrame):
                mine, theirs = mine.collect(), theirs.collect()
            if isinstance(mine, Profile):
                mine, theirs = mine.to_dict(), theirs.to_dict()
            if hasattr(mine, "equals"):  # frames and tables
                assert mine.equals(theirs), field
            else:
                assert mine == theirs, field
        assert remote.properties["columns"] == local.properties["columns"]
        assert len(remote.paths()) == len(local.paths()) == 2
        for direction in ("upstream", "downstream"):
            assert remote.lineage(direction) == local.lineage(direction)  # type: ignore[arg-type]
        assert remote.schema is not None and remote.schema.column("delay").nullable
        assert repr(remote) == repr(local)
    finally:
        ws.close()
    # A table validates against a fetched version's schema, as against a local one.
    assert lm.validate(feb, remote).ok
    with pytest.raises(lm.InvalidInputError, match="direction"):
        remote.lineage("sideways")  # type: ignore[arg-type]
    # The version's workspace is only the local cache: its database says so, not SQL.
    with pytest.raises(lm.ConfigError, match="LOOPML_URI"):
        remote.workspace.lineage.get_artifact(remote.artifact_id)


def _writes_until(ws: Workspace, since: float, last: tuple[str, str]) -> list[tuple[str, str]]:
    """The audit rows recorded from ``since`` on, once ``last`` is among them: the server
    writes its audit rows in batches, a moment after it answers."""
    deadline = time.monotonic() + 30
    while True:
        with ws.engine.connect() as conn:
            rows = [
                (m, p)
                for m, p in conn.execute(
                    select(api_writes.c.method, api_writes.c.path).where(
                        api_writes.c.created_at >= since
                    )
                )
            ]
        if last in rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_append_uploads_only_the_batch_and_records_who(as_ci: Server) -> None:
    base = pl.DataFrame({"x": list(range(2000)), "y": [f"row {i}" for i in range(2000)]})
    lm.datasets.add("appended", base)
    ws = as_ci.workspace()
    try:
        since = clock.now()
        batch = pl.DataFrame({"x": [-1, -2], "y": ["new", "newer"]})
        v2 = lm.datasets.append("appended", batch, description="two more")
        rows = _writes_until(ws, since, ("POST", "/api/v1/datasets/appended/append"))
        puts = [path for method, path in rows if method == "PUT"]
        assert len(puts) == 1  # the batch, as one Parquet file; the base is not sent again
        uploaded = ws.artifacts.local_path(puts[0].rsplit("/", 1)[1])
        assert pq.read_metadata(uploaded).num_rows == 2
        stored = Catalog(ws).get("appended", 2)
        assert (stored.created_by, stored.num_rows, stored.description) == ("ci", 2002, "two more")
        # The server shares the base version's part rather than storing it again.
        assert stored.files[0] == Catalog(ws).get("appended", 1).files[0]
    finally:
        ws.close()
    assert v2.to_polars().equals(pl.concat([base, batch]))


def test_reads_need_a_read_token_and_writes_a_write_token(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", server.url)
    monkeypatch.setenv("LOOPML_TOKEN", server.token)
    monkeypatch.chdir(tmp_path)
    lm.datasets.add("scoped", pl.DataFrame({"a": [1, 2]}))
    with pytest.raises(RemoteAccessError, match="admin"):
        lm.datasets.verify()  # every blob of the store: an admin's call
    assert lm.datasets.verify(all_artifacts=False).ok
    monkeypatch.setenv("LOOPML_TOKEN", server.read_token)
    assert [d.name for d in lm.datasets.search("scoped")] == ["scoped"]
    assert lm.datasets.schema("scoped").column("a").dtype
    assert lm.datasets.verify("scoped").ok
    assert [v.version for v in lm.datasets.versions("scoped")] == [1]
    for refused in (
        lambda: lm.datasets.append("scoped", pl.DataFrame({"a": [3]})),
        lambda: lm.datasets.update("scoped", owner="me"),
        lambda: lm.datasets.save_schema("scoped", lm.datasets.schema("scoped")),
    ):
        with pytest.raises(RemoteAccessError, match="needs 'write'"):
            refused()
    monkeypatch.delenv("LOOPML_TOKEN")
    with pytest.raises(RemoteAccessError, match="LOOPML_TOKEN"):
        lm.datasets.list_datasets()
    assert [v.version for v in Catalog(server.workspace()).versions("scoped")] == [1]


def test_malformed_dataset_writes_are_4xx_and_change_nothing(as_ci: Server) -> None:
    url, h = f"{as_ci.url}/api/v1", {"Authorization": f"Bearer {as_ci.token}"}
    lm.datasets.add("guarded", pl.DataFrame({"a": [1, 2]}))
    missing = hashing.digest_bytes(b"never uploaded")
    cases = [
        ("POST", "/datasets/guarded/append", {"digest": missing}, 404),
        ("POST", "/datasets/guarded/append", {"digest": "b3:zz"}, 400),
        ("POST", "/datasets/guarded/append", {}, 400),
        ("POST", "/datasets/guarded/append", [1, 2], 400),
        ("POST", "/datasets/..%2Fx/append", {"digest": missing}, 404),
        ("POST", "/datasets/bad%20name/append", {"digest": missing}, 400),
        ("PATCH", "/datasets/guarded", {"tags": 7}, 400),
        ("PATCH", "/datasets/guarded", {"column_descriptions": {"zz": "?"}}, 400),
        ("PATCH", "/datasets/nothing-here", {"owner": "x"}, 404),
        ("POST", "/datasets/guarded/schemas", {"yaml": "columns: [1"}, 400),
        ("POST", "/datasets/guarded/schemas", {"yaml": "format: nonsense"}, 400),
        ("GET", "/datasets/nothing-here/schemas", None, 404),
        ("GET", "/datasets/nothing-here/verification", None, 404),
        ("GET", "/verification?all_artifacts=perhaps", None, 400),
    ]
    for method, path, body, status in cases:
        r = http.request(method, url + path, json=body, headers=h)
        assert r.status_code == status, (method, path, r.text)
        assert r.json()["error"]
    ws = as_ci.workspace()
    try:
        assert [v.version for v in Catalog(ws).versions("guarded")] == [1]
        assert len(Catalog(ws).schema_versions("guarded")) == 1
        assert Catalog(ws).info("guarded").owner is None
    finally:
        ws.close()
