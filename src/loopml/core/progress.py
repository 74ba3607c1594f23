"""How long work reports how far it has got, without knowing how (or whether) it is shown.

Work that can take minutes (adding or re-hashing large data, running a pipeline, garbage
collection, imports) takes a ``Progress`` and calls it as it goes: ``(stage, done, total)``
where ``stage`` names what is being done ("profiling rows"), and ``done`` and ``total``
count the same unit. The CLI draws bars from these calls; the Python API passes ``silent``
unless the caller gives its own.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def silent(stage: str, done: int, total: int) -> None:
    """The default: report nothing."""
