"""The run folder (``--out``), checked before any training so that a bad one costs seconds, not
a lost run.

:func:`prepare_out` refuses a path that is a file, lies under a file or cannot be written;
refuses a folder that already holds a run unless ``resume`` (continue it) or ``force``
(overwrite it: its checkpoint and metrics are removed first); and removes the temporary files a
killed checkpoint or metrics write left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..atomic import stale_temporaries
from .config import ConfigError

__all__ = ["RUN_FILES", "prepare_out"]

# What a run writes with atomic replaces (their temporaries are ".<name>.*.tmp").
# steps.csv: the per-step records of an integer backend (sw.hil_run)
RUN_FILES = ("checkpoint.pt", "metrics.json", "metrics.csv", "steps.csv")


def _check_writable(out: Path) -> None:
    try:
        for parent in [out, *out.parents]:
            if parent.exists():
                if not parent.is_dir():
                    where = "is a file" if parent == out else f"lies under the file {parent}"
                    raise ConfigError(f"--out {out} {where}, not a folder")
                break
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:  # also from exists(): a name too long, a loop of links
        raise ConfigError(f"--out {out} cannot be written: {e.strerror or e}") from None


def prepare_out(out: Path | None, *, resume: bool, force: bool, main: bool = True) -> list[Path]:
    """Check and prepare the run folder ``out`` (``None``: no outputs); returns the stale
    temporary files it removed. Only the main rank (``main``) changes the folder."""
    if out is None:
        return []
    _check_writable(out)
    existing = [n for n in ("checkpoint.pt", "metrics.json") if (out / n).exists()]
    if existing and not resume and not force:
        raise ConfigError(f"--out {out} already holds a run ({existing[0]}); pass --resume to "
                          "continue it or --force to start it again")
    if not main:
        return []
    removed = [p for name in RUN_FILES for p in stale_temporaries(out, name)]
    for p in removed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    if force and not resume:
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    return removed
