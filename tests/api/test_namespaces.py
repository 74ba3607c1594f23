"""Each dotted name means one thing: ``loopml.models`` and ``loopml.monitoring`` are the
Python API that ``lm.models`` and ``lm.monitoring`` name, and the domain code lives under
other names, so ``import loopml.models`` never hands back a different module than
``lm.models``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import loopml as lm


def test_api_namespaces_are_the_modules_their_dotted_names_import() -> None:
    for name in ("models", "monitoring", "datasets"):
        assert importlib.import_module(f"loopml.{name}") is getattr(lm, name)
        assert sys.modules[f"loopml.{name}"] is getattr(lm, name)


def test_a_fresh_interpreter_sees_the_same_modules() -> None:
    # In a fresh process nothing else has imported the domain packages first, which is
    # the order in which a shadowed subpackage used to win.
    code = (
        "import loopml.models as m, loopml.monitoring as mon, loopml.registry as r, "
        "loopml.monitor as d, loopml as lm\n"
        "assert m is lm.models and mon is lm.monitoring\n"
        "assert hasattr(m, 'register') and hasattr(mon, 'check')\n"
        "print(m.__name__, mon.__name__, r.__name__, d.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "loopml.api.models",
        "loopml.api.monitoring",
        "loopml.registry",
        "loopml.monitor",
    ]
