"""What a test needs from the machine, checked one way everywhere.

On a developer's machine that lacks a program or package the test is skipped with the
install hint; under CI (``CI=true``, as ``.ci/run`` runs) it fails instead, because
``.ci/run`` installs everything: a skip there would hide that the real thing never ran.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message}; .ci/run installs it, so CI must have it", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def program(name: str, hint: str) -> str:
    """The path of ``name`` (a command on PATH, or an absolute path that must exist)."""
    found = (name if os.path.exists(name) else None) if os.sep in name else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed ({hint})")
    return found


def module(name: str, hint: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python package {name} is not installed ({hint})")
