"""Benchmarks that print figures (never asserted): ``python -m benchmarks [name ...]``.

Every module ``benchmarks/<name>.py`` that defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args)`` is a benchmark; ``python -m benchmarks --list``
lists them and ``python -m benchmarks <name> --help`` shows its options. Without a name every
benchmark runs with its defaults.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["discover"]


def discover() -> dict[str, ModuleType]:
    """``{NAME: module}`` of every benchmark module in this package, sorted by name."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if all(hasattr(mod, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            found[mod.NAME] = mod
    return dict(sorted(found.items()))
