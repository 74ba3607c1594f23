"""Fixtures for pipeline tests: a Ray instance for the whole session, started on demand."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import needs


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    ray = needs.module("ray", "the test extra installs ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    name = f"user_flow_{uuid.uuid4().hex[:8]}"
    sys.path.insert(0, str(tmp_path))
    yield tmp_path, name
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)
