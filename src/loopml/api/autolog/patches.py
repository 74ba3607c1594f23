"""Replacing library functions with logging wrappers, and putting the originals back.

Each patch remembers the exact object it replaced in the owner's ``__dict__``, so undoing
it restores that object by identity. A wrapper that finds itself inside another patched
call of the same thread (a ``Pipeline`` fitting its steps, a grid search fitting clones, a
scikit-learn wrapper calling ``xgboost.train``) calls straight through: only the outermost
fit is logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_in_patched_call: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "loopml_autolog_in_call", default=False
)


@dataclass(frozen=True)
class Patch:
    owner: Any
    name: str
    original: Any  # what owner.__dict__[name] held, or _MISSING
    replacement: Any


_patches: list[Patch] = []
_lock = threading.RLock()


def outermost() -> bool:
    """True outside any patched call of this thread."""
    return not _in_patched_call.get()


@contextlib.contextmanager
def inside() -> Iterator[None]:
    token = _in_patched_call.set(True)
    try:
        yield
    finally:
        _in_patched_call.reset(token)


def wrap_function(original: Callable[..., Any], around: Callable[..., Any]) -> Callable[..., Any]:
    """``around(original, *args, **kwargs)`` for an outermost call, ``original`` otherwise."""

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        if not outermost():
            return original(*args, **kwargs)
        with inside():
            return around(original, *args, **kwargs)

    patched.__loopml_autolog__ = True  # type: ignore[attr-defined]
    return patched


def is_patched(obj: Any) -> bool:
    return bool(getattr(obj, "__loopml_autolog__", False))


def replace(owner: Any, name: str, replacement: Any) -> None:
    with _lock:
        original = vars(owner).get(name, _MISSING)
        setattr(owner, name, replacement)
        _patches.append(Patch(owner, name, original, replacement))


def patch_function(owner: Any, name: str, around: Callable[..., Any]) -> bool:
    """Wrap ``owner.name`` (a module function or a method defined on the class ``owner``)."""
    with _lock:
        current = vars(owner).get(name)
        if current is None or is_patched(current) or not callable(current):
            return False
        replace(owner, name, wrap_function(current, around))
        return True


def undo_all() -> int:
    """Restore every patch, newest first; the number undone."""
    with _lock:
        count = len(_patches)
        while _patches:
            p = _patches.pop()
            if vars(p.owner).get(p.name, _MISSING) is not p.replacement:
                continue  # someone else replaced it since; theirs stays
            if p.original is _MISSING:
                delattr(p.owner, p.name)
            else:
                setattr(p.owner, p.name, p.original)
        return count


def active() -> list[Patch]:
    with _lock:
        return list(_patches)
