"""Replacing library functions with logging wrappers, and putting the originals back.

Each patch remembers the exact object it replaced in the owner's ``__dict__``, so undoing
it restores that object by identity. A wrapper that finds itself inside another patched
call of the same thread (a ``Pipeline`` fitting its steps, a grid search fitting clones, a
scikit-learn wrapper calling ``xgboost.train``) calls straight through: only the outermost
fit is logged.

A library too heavy to import for the sake of patching it (PyTorch Lightning takes seconds)
is patched by :func:`when_imported`: at once if it is loaded already, otherwise by an
import hook the moment it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.abc
import importlib.machinery
import sys
import threading
import types
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
_hooks: list[_ImportHook] = []
_at_undo: list[Callable[[], None]] = []
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


class _PatchingLoader(importlib.abc.Loader):
    """The module's own loader, calling ``then(module)`` once the module has run."""

    def __init__(self, loader: importlib.abc.Loader, then: Callable[[types.ModuleType], None]):
        self._loader = loader
        self._then = then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        # The module's own loader stays its __loader__ (inspect, pkgutil and
        # importlib.resources ask it for source and data).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        try:
            self._then(module)
        except Exception as exc:  # the user's import goes ahead, unpatched
            from loopml.api.autolog.recording import warn

            warn(f"autolog could not patch {module.__name__}: {type(exc).__name__}: {exc}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, then: Callable[[types.ModuleType], None]) -> None:
        self.module = module
        self.then = then

    def find_spec(
        self, fullname: str, path: Any, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _ImportHook):
                continue
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, self.then)
                return spec
        return None


def when_imported(module: str, then: Callable[[types.ModuleType], None]) -> None:
    """``then(module)`` now if ``module`` is loaded, else when it is first imported."""
    with _lock:
        loaded = sys.modules.get(module)
        if loaded is not None:
            then(loaded)
            return
        hook = _ImportHook(module, then)
        sys.meta_path.insert(0, hook)
        _hooks.append(hook)


def at_undo(callback: Callable[[], None]) -> None:
    """``callback()`` before every :func:`undo_all` (ending what the patches began)."""
    with _lock:
        if callback not in _at_undo:
            _at_undo.append(callback)


def undo_all() -> int:
    """Remove the import hooks and restore every patch, newest first; the number undone."""
    with _lock:
        for callback in list(_at_undo):
            callback()
        while _hooks:
            hook = _hooks.pop()
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
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
