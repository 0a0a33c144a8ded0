"""Per-epoch training metrics: a list of records kept in memory and mirrored to
``metrics.json`` (nested, complete) and ``metrics.csv`` (flat, one row per epoch; per-layer
values in columns ``<layer>/<stat>``), both written atomically after every epoch."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .atomic import atomic_write_text

__all__ = ["flatten_record", "write_metrics"]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN/inf
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def flatten_record(rec: dict) -> dict:
    """One CSV row: scalars as they are, ``rec["layers"][name][stat]`` as ``name/stat``."""
    row = {k: v for k, v in rec.items() if not isinstance(v, dict | list)}
    for name, stats in (rec.get("layers") or {}).items():
        for stat, v in stats.items():
            if not isinstance(v, dict | list):
                row[f"{name}/{stat}"] = v
    return row


def write_metrics(history: list[dict], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.csv`` under ``out_dir``; returns both paths."""
    out = Path(out_dir)
    jpath = atomic_write_text(json.dumps(_clean(history), indent=1) + "\n",
                              out / "metrics.json", parents=True)
    rows = [flatten_record(r) for r in history]
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    cpath = atomic_write_text(buf.getvalue(), out / "metrics.csv", parents=True)
    return jpath, cpath
