"""``lm.models`` through a team server: a registration, load and promotion made with the
token "ci" shows "ci"; uploads and downloads are content-addressed and verified; a gate
(which runs the uploaded model on the server) needs an admin token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

import loopml as lm
from loopml.api.remote import RemoteAccessError
from loopml.api.remote.artifacts import cache_store
from loopml.core import hashing
from loopml.data.catalog import Catalog
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


class Remote:
    def __init__(self, url: str, made: dict[str, str], stores: tuple[str, str] = ("", "")):
        self.url, self.tokens = url, made
        self.api = f"{url}/api/v1"
        self.stores = stores

    def headers(self, name: str = "ci") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def table() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    return pl.DataFrame({"x": x, "z": rng.normal(size=300), "y": (x > 0).astype(np.int64)})


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("models")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        made = {
            name: tokens.create(ws, name, scope)
            for name, scope in (("ci", "write"), ("boss", "admin"), ("dash", "read"))
        }
        # The holdout the server-side gate scores on: a dataset of the server's catalog.
        Catalog(ws).add("holdout", table().tail(100))
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield Remote(url, made, (db, artifacts))
    finally:
        stop(proc)


@pytest.fixture
def as_ci(remote: Remote, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Remote:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", remote.url)
    monkeypatch.setenv("LOOPML_TOKEN", remote.tokens["ci"])
    monkeypatch.chdir(tmp_path)
    return remote


def test_register_load_promote_through_the_server(as_ci: Remote) -> None:
    data = table()
    X, y = data.select("x", "z"), data["y"].to_numpy()
    model = LogisticRegression().fit(X.to_pandas(), y)
    with lm.start_run("remote-models") as run:
        run.log_metric("acc", 0.9)
    mv = lm.models.register("churn", model, X, run=run, description="first", tags={"k": 1})
    assert (mv.name, mv.version, mv.run_id, mv.created_by) == ("churn", 1, run.id, "ci")
    assert mv.tags == {"k": "1"} and mv.flavor == "sklearn"
    # Registering the same model again uploads nothing new and makes version 2.
    again = lm.models.register("churn", model, X)
    assert again.version == 2 and again.digest == mv.digest
    loaded = lm.models.load("churn:1")
    assert loaded.digest == mv.digest
    np.testing.assert_array_equal(loaded.predict(X.to_pandas()), model.predict(X.to_pandas()))
    result = lm.models.promote("churn", 1, "champion", reason="first one")
    assert result.allowed and result.event.created_by == "ci"
    assert lm.models.get("churn@champion").version == 1
    assert lm.models.get("churn").version == 2
    assert [v.version for v in lm.models.versions("churn")] == [1, 2]
    (event,) = lm.models.history("churn", "champion")
    assert (event.to_version, event.created_by, event.reason) == (1, "ci", "first one")
    champion = lm.models.load("churn@champion")
    np.testing.assert_array_equal(champion.predict(X.to_pandas()), model.predict(X.to_pandas()))
    # The server's pages say who did it.
    page = http.get(f"{as_ci.url}/models/churn", headers=as_ci.headers()).text
    assert page.count('class="who">ci<') >= 3  # two versions and one alias move


def test_a_gate_runs_on_the_server_and_needs_an_admin_token(
    as_ci: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = table()
    X, y = data.select("x", "z"), data["y"].to_numpy()
    mv = lm.models.register("gated", LogisticRegression().fit(X.to_pandas(), y), X)
    gate = lm.models.gate(lm.models.Threshold("roc_auc", min=0.8), target="y")
    with pytest.raises(RemoteAccessError, match="admin"):
        lm.models.promote("gated", mv.version, gate=gate, data="holdout")
    monkeypatch.setenv("LOOPML_TOKEN", as_ci.tokens["boss"])
    result = lm.models.promote("gated", mv.version, gate=gate, data="holdout:1")
    assert result.allowed and result.gate is not None and result.gate.passed
    assert result.event.created_by == "boss"
    strict = lm.models.gate(lm.models.Threshold("roc_auc", min=1.01), target="y")
    mv2 = lm.models.register("gated", LogisticRegression(C=1e-6).fit(X.to_pandas(), y), X)
    with pytest.raises(lm.models.PromotionRefusedError):
        lm.models.promote("gated", mv2.version, gate=strict, data="holdout")
    assert lm.models.get("gated@champion").version == mv.version
    refused = lm.models.history("gated")[-1]
    assert not refused.allowed and refused.created_by == "boss"
    with pytest.raises(lm.InvalidInputError, match="names a dataset"):
        lm.models.promote("gated", mv2.version, gate=strict, data=data)


def test_bad_uploads_and_references_are_clear_4xx(as_ci: Remote) -> None:
    api, h = as_ci.api, as_ci.headers()
    body = b"some bytes"
    digest = hashing.digest_bytes(body)
    other = hashing.digest_bytes(b"other bytes")
    r = http.put(f"{api}/blobs/{other}", content=body, headers=h)
    assert r.status_code == 400 and "hash to" in r.json()["error"]
    assert (
        http.put(f"{api}/blobs/{digest}", content=body, headers=as_ci.headers("dash")).status_code
        == 403
    )
    assert http.put(f"{api}/blobs/{digest}", content=body, headers=h).status_code == 200
    assert http.get(f"{api}/blobs/{digest}", headers=h).content == body
    assert http.put(f"{api}/blobs/b3:xyz", content=body, headers=h).status_code == 400
    assert http.get(f"{api}/blobs/{other}", headers=h).status_code == 404
    missing = http.post(f"{api}/missing-blobs", json={"digests": [digest, other]}, headers=h)
    assert missing.json()["missing"] == [other]
    # A digest that is not an uploaded model tree registers nothing.
    for d, words in ((other, "not in the artifact store"), (digest, "not a tree")):
        r = http.post(f"{api}/models/bad/versions", json={"digest": d}, headers=h)
        assert r.status_code in (400, 404) and words in r.json()["error"], r.text
    r = http.post(f"{api}/models/bad%0Aname/versions", json={"digest": digest}, headers=h)
    assert r.status_code == 400
    assert http.get(f"{api}/models/bad", headers=h).status_code == 404
    for ref, error in (("nope@champion", lm.NotFoundError), ("bad name!", lm.InvalidInputError)):
        with pytest.raises(error):
            lm.models.load(ref)
    r = http.post(f"{api}/models/x/aliases/champion", json={"version": 0}, headers=h)
    assert r.status_code == 400
    r = http.post(
        f"{api}/models/x/aliases/champion", json={"version": 1, "gate": {"checks": 3}}, headers=h
    )
    assert r.status_code == 400


def test_a_tampered_cache_is_fetched_again(as_ci: Remote) -> None:
    data = table()
    X, y = data.select("x", "z"), data["y"].to_numpy()
    model = LogisticRegression(C=0.5).fit(X.to_pandas(), y)
    mv = lm.models.register("tamper", model, X)
    store = cache_store()
    tree = store.get_tree(mv.digest)
    victim = store.path_of(tree.entries[0].digest)
    os.chmod(victim, 0o644)
    Path(victim).write_bytes(b"tampered")
    loaded = lm.models.load("tamper:1")
    np.testing.assert_array_equal(loaded.predict(X.to_pandas()), model.predict(X.to_pandas()))
    assert store.verify(tree.entries[0].digest) > 0


def test_registry_writes_need_their_scope_and_record_who(
    as_ci: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = table()
    X, y = data.select("x", "z"), data["y"].to_numpy()
    lm.models.register("scoped", LogisticRegression().fit(X.to_pandas(), y), X)
    lm.models.register("scoped", LogisticRegression(C=0.1).fit(X.to_pandas(), y), X)
    lm.models.promote("scoped", 1)
    lm.models.promote("scoped", 2)
    api, reader = as_ci.api, as_ci.headers("dash")
    # A read token reads the policy but can neither set it nor roll back.
    assert http.get(f"{api}/models/scoped/policy", headers=reader).json() == {"gate": None}
    r = http.put(f"{api}/models/scoped/policy", json={"gate": None}, headers=reader)
    assert r.status_code == 403
    r = http.post(f"{api}/models/scoped/aliases/champion/rollback", json={}, headers=reader)
    assert r.status_code == 403
    assert lm.models.get("scoped@champion").version == 2
    # An evaluation runs the uploaded model on the server: a write token is not enough.
    with pytest.raises(RemoteAccessError, match="admin"):
        lm.models.evaluate("scoped:1", "holdout", "y")
    monkeypatch.setenv("LOOPML_TOKEN", as_ci.tokens["boss"])
    result = lm.models.evaluate("scoped:1", "holdout", "y")
    assert result.n_rows == 100 and 0.5 < result.metrics["roc_auc"] <= 1.0
    event = lm.models.rollback("scoped", reason="by the boss")
    assert (event.to_version, event.created_by) == (1, "boss")
    ws = Workspace(*as_ci.stores)
    try:
        (latest, *_) = ws.lineage.latest_executions(["evaluation"], limit=1)
    finally:
        ws.close()
    assert latest.properties["created_by"] == "boss"
    assert latest.properties["metrics"]["roc_auc"] == result.metrics["roc_auc"]
    # What only makes sense locally says what to pass instead.
    with pytest.raises(lm.InvalidInputError, match="registered model"):
        lm.models.evaluate(LogisticRegression().fit(X.to_pandas(), y), "holdout", "y")
    with pytest.raises(lm.InvalidInputError, match="names a labelled dataset"):
        lm.models.evaluate("scoped:1", data, "y")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/models/scoped/policy", {"gate": {"checks": 3}}, 400),
        ("PUT", "/models/scoped/policy", {}, 400),
        ("PUT", "/models/scoped/policy", [1, 2], 400),
        ("PUT", "/models/scoped/policy", b"{not json", 400),
        ("PUT", "/models/no-such-model/policy", {"gate": None}, 404),
        ("PUT", "/models/bad%20name/policy", {"gate": None}, 400),
        ("GET", "/models/no-such-model/policy", None, 404),
        ("POST", "/models/scoped/aliases/bad%20alias/rollback", {}, 400),
        ("POST", "/models/scoped/aliases/nobody/rollback", {}, 404),
        ("POST", "/models/no-such-model/aliases/champion/rollback", {}, 404),
        ("POST", "/models/scoped/aliases/champion/rollback", {"reason": 5}, 400),
        ("POST", "/models/scoped/aliases/champion/rollback", {"reason": "x" * 3000}, 400),
        ("POST", "/evaluations", {"model": "scoped:1"}, 400),
        ("POST", "/evaluations", {"model": "bad name!", "data": "holdout", "target": "y"}, 400),
        ("POST", "/evaluations", {"model": "scoped:99", "data": "holdout", "target": "y"}, 404),
        ("POST", "/evaluations", {"model": "scoped:1", "data": "nothing", "target": "y"}, 404),
        ("POST", "/evaluations", {"model": "scoped:1", "data": "holdout@x", "target": "y"}, 400),
        ("POST", "/evaluations", {"model": "scoped:1", "data": "holdout", "target": "nope"}, 400),
        (
            "POST",
            "/evaluations",
            {"model": "scoped:1", "data": "holdout", "target": "y", "slice_by": ["nope"]},
            400,
        ),
        (
            "POST",
            "/evaluations",
            {"model": "scoped:1", "data": "holdout", "target": "y", "run_id": "no-such-run"},
            404,
        ),
    ],
)
def test_bad_registry_writes_are_clear_4xx(
    as_ci: Remote, method: str, path: str, body: object, status: int
) -> None:
    if not any(m.name == "scoped" for m in lm.models.list_models()):
        data = table()
        X, y = data.select("x", "z"), data["y"].to_numpy()
        lm.models.register("scoped", LogisticRegression().fit(X.to_pandas(), y), X)
    content = body if isinstance(body, bytes) else None
    r = http.request(
        method,
        f"{as_ci.api}{path}",
        json=None if content is not None or body is None else body,
        content=content,
        headers={**as_ci.headers("boss"), "Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_the_models_commands_work_through_the_server(
    as_ci: Remote,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from loopml.cli.app import main

    monkeypatch.setenv("COLUMNS", "200")
    data = table()
    X, y = data.select("x", "z"), data["y"].to_numpy()
    lm.models.register("cli-model", LogisticRegression().fit(X.to_pandas(), y), X)
    lm.models.register("cli-model", LogisticRegression(C=0.2).fit(X.to_pandas(), y), X)
    capsys.readouterr()
    assert main(["models", "ls"]) == 0
    assert "cli-model" in capsys.readouterr().out
    assert main(["models", "ls", "cli-model"]) == 0
    listed = capsys.readouterr().out
    assert "2 versions" in listed and "sklearn" in listed
    assert main(["models", "promote", "cli-model:1", "--reason", "first"]) == 0
    assert "promoted" in capsys.readouterr().out
    # A gated promotion runs on the server, on a dataset of its catalog: an admin token.
    gate = tmp_path / "gate.yaml"
    gate.write_text(
        "name: floor\ntarget: y\nchecks: [{type: threshold, metric: roc_auc, min: 0.6}]\n"
    )
    args = ["models", "promote", "cli-model", "2", "--gate", str(gate), "--data", "holdout"]
    assert main(args) == 1
    assert "admin" in capsys.readouterr().err
    monkeypatch.setenv("LOOPML_TOKEN", as_ci.tokens["boss"])
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "roc_auc" in shown and "promoted" in shown and "1 -> 2" in shown
    assert main(["models", "show", "cli-model@champion"]) == 0
    shown = capsys.readouterr().out
    assert "cli-model:2" in shown and "gate floor passed" in shown
    assert main(["models", "rollback", "cli-model@champion", "--reason", "oops"]) == 0
    assert "2 -> 1" in capsys.readouterr().out
    assert main(["models", "history", "cli-model", "--alias", "champion"]) == 0
    history = capsys.readouterr().out
    assert "rollback" in history and "oops" in history and "first" in history
    assert main(["models", "card", "cli-model@champion"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("# Model card: cli-model:1") and "## Gate checks" in card
    # Mistakes are clear errors, no traceback.
    for argv, code, words in (
        (["models", "show", "nobody@champion"], 1, "no registered model"),
        (["models", "rollback", "cli-model@champion"], 1, "no earlier version"),
        (["models", "history", "cli-model:3"], 2, "not a version"),
        (["models", "promote", "cli-model:1"], 1, "already points to version 1"),
        (["models", "promote", "cli-model:2", "--data", str(gate), "--gate", str(gate)], 2, "file"),
        (
            ["models", "promote", "cli-model:2", "--data", "nothing", "--gate", str(gate)],
            1,
            "nothing",
        ),
    ):
        code_got = main(argv)
        err = capsys.readouterr().err
        assert code_got == code, (argv, err)
        assert words in err and "Traceback" not in err
