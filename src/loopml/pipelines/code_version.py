"""A step's code version: a digest of its source and of the local code it uses.

The source is parsed and re-printed (``ast.unparse``) without decorators, comments or
docstring, so reformatting or commenting a step does not invalidate its cache, while any
change to what it computes does. Names the function reads are resolved through its
globals and closure; functions and classes defined in the step's own module are hashed
too (recursively), and so are simple constants there (``THRESHOLD = 0.5``). Library code
is not hashed: its version is part of the recorded environment, not of the cache key.
"""

from __future__ import annotations

import ast
import inspect
import json
import marshal
import textwrap
import types
from collections.abc import Callable
from typing import Any

from loopml.core.hashing import digest_bytes
from loopml.pipelines.module_names import module_name

_CONSTANT_TYPES = (int, float, str, bytes, bool, type(None))
_cache: dict[Any, str] = {}


def code_version(fn: Callable[..., Any]) -> str:
    """``b3:`` digest of ``fn``'s normalised source plus its local dependencies."""
    # Keyed by the code object too: re-importing a changed module makes a new one.
    key = (fn, getattr(fn, "__code__", None))
    found = _cache.get(key)
    if found is None:
        parts: dict[str, str] = {}
        _collect(fn, fn.__module__, parts)
        payload = json.dumps(parts, sort_keys=True).encode()
        found = _cache[key] = digest_bytes(payload)
    return found


def _collect(obj: Any, module: str, parts: dict[str, str]) -> None:
    # Keyed by the importable module name: the same code run as a script (``__main__``)
    # and imported by name has one version.
    name = f"{module_name(obj)}.{getattr(obj, '__qualname__', repr(obj))}"
    if name in parts:
        return
    tree, text = _normalised_source(obj)
    parts[name] = text
    if tree is None:
        return
    for ref_name, ref in _referenced(obj, tree):
        target = getattr(ref, "fn", ref)  # a Step object stands for its function
        if inspect.isfunction(target) or inspect.isclass(target):
            if getattr(target, "__module__", None) == module:
                _collect(target, module, parts)
        elif _is_constant(target):
            parts[f"{name}:{ref_name}"] = repr(target)


def _normalised_source(obj: Any) -> tuple[ast.AST | None, str]:
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        # No source (defined in a REPL or exec): fall back to the compiled code.
        code = getattr(obj, "__code__", None)
        if code is None:
            return None, repr(obj)
        return None, digest_bytes(marshal.dumps(_strip_positions(code)))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.decorator_list = []
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree, ast.unparse(tree)


def _strip_positions(code: types.CodeType) -> types.CodeType:
    return code.replace(co_firstlineno=1, co_linetable=b"", co_filename="")


def _is_constant(value: Any) -> bool:
    if isinstance(value, _CONSTANT_TYPES):
        return True
    return isinstance(value, tuple | frozenset) and all(
        isinstance(v, _CONSTANT_TYPES) for v in value
    )


def _referenced(obj: Any, tree: ast.AST) -> list[tuple[str, Any]]:
    """(name, object) for the names and ``module.attr`` chains in ``tree``."""
    scope: dict[str, Any] = dict(getattr(obj, "__globals__", None) or {})
    if inspect.isclass(obj):
        mod = inspect.getmodule(obj)
        scope = dict(vars(mod)) if mod else {}
    closure = getattr(obj, "__closure__", None)
    code = getattr(obj, "__code__", None)
    if closure and code is not None:
        for var, cell in zip(code.co_freevars, closure, strict=True):
            try:
                scope[var] = cell.cell_contents
            except ValueError:  # an empty cell: the variable was never bound
                continue
    found: list[tuple[str, Any]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in scope:
                found.append((node.id, scope[node.id]))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = scope.get(node.value.id)
            if isinstance(base, types.ModuleType):
                found.append((f"{node.value.id}.{node.attr}", getattr(base, node.attr, None)))
    return found
