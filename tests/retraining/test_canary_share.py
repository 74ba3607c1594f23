"""The canary's share is set in one place, the loop: a server given ``--canary
name@challenger`` takes the loop's share and follows it when it changes, and a server
given another share than the loop's is refused, naming both."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loopml.cli.app import main
from loopml.core.errors import InvalidInputError
from loopml.retraining.loop import Loop
from loopml.retraining.traffic import Traffic
from loopml.serving.deployment import _bucket
from loopml.serving.options import CanarySpec, ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.retraining import flows
from tests.retraining.conftest import DEADLINE, MODEL, Client


def _server(ws: Workspace, canary: str) -> ServerThread:
    options = ServeOptions(
        f"{MODEL}@champion",
        port=0,
        canary=CanarySpec.parse(canary),
        deployment="delay-share",
        poll_interval=0.1,
        log_flush_interval=0.1,
    )
    return ServerThread(ws, options)


def _loop(ws: Workspace, canary: float) -> Loop:
    return Loop(ws, MODEL, flows.retrain, canary=canary, pipeline_params={"months": [1, 7]})


def _roles(ws: Workspace) -> dict[str, str]:
    """request id -> the role that answered it, from the prediction log."""
    traffic = Traffic(ws, MODEL)
    traffic.refresh()
    rows = traffic.predictions.unique("request_id")
    return dict(zip(rows["request_id"].to_list(), rows["role"].to_list(), strict=True))


def test_the_spec_parses_a_share_or_follows_the_loop() -> None:
    assert CanarySpec.parse("delay@challenger") == CanarySpec("delay@challenger", None)
    assert CanarySpec.parse("delay@challenger").follows_loop
    assert CanarySpec.parse("delay@challenger:10") == CanarySpec("delay@challenger", 10.0)
    assert CanarySpec.parse("delay:3:25") == CanarySpec("delay:3", 25.0)
    for bad in ("delay", "delay@challenger:0", "delay@challenger:x", "@x", "delay@"):
        with pytest.raises(InvalidInputError):
            CanarySpec.parse(bad)


@pytest.mark.slow
def test_the_server_takes_the_loops_share_and_follows_it(ws: Workspace, july: pl.DataFrame) -> None:
    _loop(ws, canary=0.3).declare()
    with _server(ws, f"{MODEL}@challenger") as server:
        client = Client(server, ws)
        client.replay(july.slice(0, 2000), per_request=10)
        roles = _roles(ws)
        assert len(roles) == 200
        # Each request's bucket (0-100, from its id) decides: below the share, the canary.
        expected = {rid: "canary" if _bucket(rid) < 30 else "primary" for rid in roles}
        assert roles == expected
        assert 0 < sum(r == "canary" for r in roles.values()) < 200

        # The loop's share changes; the running server follows at its next registry poll.
        _loop(ws, canary=0.6).declare()
        probe = _probe(client, july, lambda rid: 30 <= _bucket(rid) < 60)
        assert probe == "canary"


def _probe(client: Client, july: pl.DataFrame, wanted: Any) -> str:
    """Send one request whose id falls in ``wanted`` buckets until the canary answers it."""
    deadline = time.monotonic() + DEADLINE
    while True:
        before = set(_roles(client.ws))
        answers = client.replay(july.slice(0, 1), per_request=1)
        rid = answers[0]["id"]
        assert rid not in before
        if wanted(rid):
            role = _roles(client.ws)[rid]
            if role == "canary":
                return role
        assert time.monotonic() < deadline, "the server never took the loop's new share"


def test_a_share_that_differs_from_the_loops_is_refused_naming_both(ws: Workspace) -> None:
    _loop(ws, canary=0.3).declare()
    with pytest.raises(InvalidInputError) as refused:
        _server(ws, f"{MODEL}@challenger:20").start()
    message = str(refused.value)
    assert f"--canary {MODEL}@challenger:20 sends 20%" in message
    assert f"loop '{MODEL}'" in message and "canary=0.3 (30%)" in message
    # The same share as the loop's is accepted.
    with _server(ws, f"{MODEL}@challenger:30") as server:
        assert server.url


def test_following_a_loop_that_does_not_exist_is_refused(ws: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="there is none in this workspace yet"):
        _server(ws, f"{MODEL}@challenger").start()


def test_loopml_serve_refuses_a_share_the_loop_does_not_set(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    _loop(ws, canary=0.3).declare()
    monkeypatch.setenv("LOOPML_DB", ws.db_url)
    monkeypatch.setenv("LOOPML_ARTIFACTS", ws.artifacts_url)
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["serve", f"{MODEL}@champion", "--port", "0", "--canary", f"{MODEL}@challenger:20"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "canary=0.3 (30%)" in err and "Traceback" not in err
