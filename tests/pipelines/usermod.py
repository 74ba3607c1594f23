"""A user's pipeline module written to disk, edited and re-imported by the tests."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path
from types import ModuleType


def _write_module(folder: Path, name: str, body: str, version: int) -> None:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    # A distinct mtime per version: import and inspect caches key on (mtime, size).
    os.utime(path, (1_700_000_000 + version, 1_700_000_000 + version))


MODULE_V1 = """
    from __future__ import annotations
    import loopml.api.pipelines as lm

    SCALE = 2

    def helper(x: int) -> int:
        return x * SCALE

    @lm.step
    def source(n: int) -> list[int]:
        return list(range(n))

    @lm.step
    def transform(values: list[int]) -> list[int]:
        return [helper(v) for v in values]

    @lm.step
    def total(values: list[int]) -> int:
        return sum(values)

    @lm.pipeline
    def chain(n: int = 4):
        return total(transform(source(n)))
"""


def reload_module(folder: Path, name: str, body: str, version: int) -> ModuleType:
    _write_module(folder, name, body, version)
    importlib.invalidate_caches()
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)
