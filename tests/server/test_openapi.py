"""Schemathesis against ``/api/v1/openapi.json`` of the real server: no 5xx, and every
response matches the document (status codes, content types, bodies)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.server.conftest import Populated, start_server, stop

pytestmark = pytest.mark.slow
# Bounded: the suite must stay fast on two shared cores.
EXAMPLES = 8


@pytest.fixture(scope="module")
def api_schema(populated: Populated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # A copy: generated writes (new runs, tags, metrics) must not change what the other
    # server tests see.
    home = tmp_path_factory.mktemp("openapi") / "home"
    shutil.copytree(populated.home, home)
    proc, url = start_server(home)
    try:
        yield schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    finally:
        stop(proc)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    # Valid-looking but unknown ids (a random run id) rightly answer 404, not 2xx.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_document_lists_every_area(populated: Populated, tmp_path: Path) -> None:
    from loopml.server.app import create_app
    from loopml.store.workspace import Workspace

    ws = Workspace(f"sqlite:///{tmp_path / 'l.db'}", str(tmp_path / "a"))
    try:
        paths = create_app(ws).openapi()["paths"]
    finally:
        ws.close()
    for prefix in ("runs", "datasets", "models", "lineage", "artifacts", "pipelines", "monitoring"):
        assert any(p.startswith(f"/api/v1/{prefix}") for p in paths), prefix
    # Pages are not API: they stay out of the document.
    assert not any(not p.startswith("/api/v1/") for p in paths)
