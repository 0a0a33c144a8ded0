"""The documentation names things that exist: every dotted name of the project's packages
written in backticks (``sim.gemm.run_gemms``, :func:`~sim.cluster.local_client`) in the
Markdown documents and the Python sources (docstrings, comments) resolves by import and
attribute lookup, and every path of a tracked folder in backticks (``sim/cluster.py``) exists.

Left out are the records of past builds and measurements (``CHANGELOG.md``, the bitstream
reports and analyses, which describe the design of their commit), and the few names a document
mentions as history (``HISTORY``)."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = "sim|hw|sw|bitstreams|benchmarks"
NAME = re.compile(rf"`~?((?:{PACKAGES})\.[A-Za-z_][\w.]*)")
PATH = re.compile(rf"`((?:{PACKAGES}|tests|docs)/[\w./-]+)`")
RECORDS = re.compile(r"^(CHANGELOG|bitstreams/README|bitstreams/[^/]+/(report|analysis))\.md$")
#: names a document mentions as what was, by file
HISTORY = {
    # the measurement log: "(then sim.compare.PLAIN_GEMM_MODELS, since 23:40 UTC ...)"
    "docs/simulation.md": {"sim.compare.PLAIN_GEMM_MODELS"},
}


def _files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.md", "*.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    return [f for f in out if not RECORDS.match(f)]


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_named_objects_exist():
    missing = []
    for f in _files():
        names = set(m.group(1).rstrip(".") for m in NAME.finditer((REPO / f).read_text()))
        missing += [f"{f}: {n}" for n in sorted(names - HISTORY.get(f, set()))
                    if not _resolves(n)]
    assert missing == []


def test_named_paths_exist():
    missing = []
    for f in _files():
        for p in sorted(set(PATH.findall((REPO / f).read_text()))):
            path = p.rstrip("/.")
            if any(c in path for c in "*<{") or "/build/" in path:  # patterns, build output
                continue
            if not (REPO / path).exists():
                missing.append(f"{f}: {p}")
    assert missing == []


def test_the_module_table_of_the_simulation_docs_is_complete():
    """docs/simulation.md opens with a table of the modules of ``sim/``: each is in it."""
    text = (REPO / "docs" / "simulation.md").read_text()
    table = {p for line in text.splitlines() if line.startswith("| `sim/")
             for p in re.findall(r"`(sim/[\w./]+)`", line.split(" | ")[0])}
    tracked = subprocess.run(["git", "ls-files", "sim/*.py", "sim/*.cpp"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    assert sorted(f for f in tracked if not f.endswith("__init__.py") and f not in table) == []
