"""``lm.datasets.add / get`` through a team server: the server profiles and stores the
version, records the token's name, and the client reads the parts back verified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import loopml as lm
from loopml.core import hashing
from loopml.server import tokens
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    base = tmp_path_factory.mktemp("datasets")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        token = tokens.create(ws, "ci", "write")
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield url, token, db
    finally:
        stop(proc)


@pytest.fixture
def as_ci(
    server: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, str, str]:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", server[0])
    monkeypatch.setenv("LOOPML_TOKEN", server[1])
    monkeypatch.chdir(tmp_path)
    return server


def test_add_and_get_through_the_server(as_ci: tuple[str, str, str], tmp_path: Path) -> None:
    url, token, _ = as_ci
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


def test_bad_dataset_input_is_a_clear_error(as_ci: tuple[str, str, str]) -> None:
    url, token, _ = as_ci
    with pytest.raises(lm.NotFoundError):
        lm.datasets.get("nothing-here")
    with pytest.raises(lm.InvalidInputError):
        lm.datasets.get("flights@champion")
    with pytest.raises(lm.InvalidInputError, match="remote mode"):
        lm.datasets.add("flights", pl.DataFrame({"a": [1]}), csv_options={"separator": ";"})
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
