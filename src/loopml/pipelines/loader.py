"""``module:attribute`` -> the Pipeline it names, with clear errors for each way to fail."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.pipelines.definition import Pipeline


def load_pipeline(ref: str) -> Pipeline:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(
            f"{ref!r} is not a pipeline reference; write module:pipeline, e.g. "
            "flows.training:training"
        )
    # A command-line tool runs from the user's project: let its modules import.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise NotFoundError(
                f"cannot import {module_name!r}: no such module (looked in the current "
                "folder and on sys.path)"
            ) from None
        raise InvalidInputError(_import_failed(module_name, exc)) from None
    except Exception as exc:
        raise InvalidInputError(_import_failed(module_name, exc)) from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NotFoundError(f"module {module_name!r} has no pipeline {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, Pipeline):
        raise InvalidInputError(
            f"{ref} is a {type(obj).__name__}, not a pipeline; decorate it with @lm.pipeline"
        )
    return obj


def _import_failed(module_name: str, exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"module {module_name!r} failed to import: {type(exc).__name__}: {exc}{where}"
