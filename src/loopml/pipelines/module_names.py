"""The importable name of the module a step or pipeline was defined in.

Run as ``python my_module.py``, a module is called ``__main__``; run as
``loopml pipeline run my_module:training`` the same code is ``my_module``. Both must
record one reference and one code version, or every cached step re-runs. The name is
found as Python would import the file: ``__spec__.name`` when started with ``python -m``,
otherwise the file's path below the package folders that hold it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def module_name(obj: Any) -> str:
    """``obj.__module__``, with ``__main__`` replaced by the name it imports as."""
    name = getattr(obj, "__module__", None) or "?"
    if name != "__main__":
        return str(name)
    return main_module_name() or name


def main_module_name() -> str | None:
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name and spec_name != "__main__":
        # ``python -m pkg.mod`` sets the real name; ``python -m pkg`` runs pkg.__main__.
        return spec_name
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None  # an interactive session or ``python -c``: no file to import
    return name_of_file(Path(file))


def name_of_file(path: Path) -> str:
    """``a/b/c.py`` -> ``b.c`` when ``b`` is a package (has ``__init__.py``) and ``a``
    is not: the dotted name under which the file imports from its top folder."""
    path = path.resolve()
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        parts.append(folder.name)
        folder = folder.parent
    return ".".join(reversed(parts))
