"""Packages whose public names are imported from their modules on first use (PEP 562 ``__getattr__``), so that
importing the package loads nothing heavy (transformers takes seconds to import; the CLI and config checks should
not pay for it).

Example (in a package's ``__init__.py``)::

    __all__, __getattr__ = lazy_exports(__name__, {"config": ("PolicyConfig",), "loading": ("load_policy",)})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` of ``package``: ``modules`` maps each module (relative to the package) to the names
    it exports; a name is imported from its module when it is first asked for."""
    where = {name: module for module, names in modules.items() for name in names}

    def attribute(name: str) -> Any:  # the package's __getattr__: called for names it does not have yet
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{where[name]}", package), name)

    return sorted(where), attribute
