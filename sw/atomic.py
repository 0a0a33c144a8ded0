"""Atomic file writes: a file is either its previous complete version or the new one.

The new content goes to a temporary file ``.<name>.<random>.tmp`` in the target's folder,
which is flushed and fsync'ed and then moved over the target with ``os.replace`` (atomic on
POSIX and Windows; the folder is fsync'ed after it where the system allows), so a crash, a
kill or an exception during the write never leaves a truncated target. An exception removes
the temporary file; a kill leaves it, and :func:`stale_temporaries` finds it (the trainer
removes those of its run files, ``sw.train.outdir.RUN_FILES``, at its next start).

The new file keeps the permission bits of the file it replaces (a new one gets ``new_mode``,
by default ``0o600``, the temporary file's own). An ``OSError`` names the target, never the
temporary file. Standard library only: the FPGA build (``bitstreams.bram_outreg``) uses it
and must not import torch (``sw.checkpoint`` does).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "stale_temporaries"]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` as the same kind of ``OSError`` about ``path`` (one without an ``errno``, which
    did not come from the system, unchanged)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(path))


def atomic_write(path: str | os.PathLike, write, *, parents: bool = False,
                 new_mode: int = 0o600) -> Path:
    """Write ``path`` atomically: ``write(f)`` writes the content to ``f``, a binary file
    object of the temporary file (see the module docstring). Returns ``path`` as a ``Path``.

    Parameters
    ----------
    path : path-like
        The target; its folder must exist unless ``parents``.
    write : callable
        Called once with the open temporary file; an exception from it leaves ``path`` as it
        was and is raised (an ``OSError`` naming ``path``).
    parents : bool
        Create the missing folders above ``path`` first.
    new_mode : int
        The permission bits of ``path`` if it does not exist yet (an existing file's are kept).

    Raises
    ------
    OSError
        With ``filename`` ``path`` (never the temporary file's name).
    """
    path = Path(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = new_mode
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(text: str, path: str | os.PathLike, *, parents: bool = False,
                      new_mode: int = 0o600) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), parents=parents,
                        new_mode=new_mode)


def stale_temporaries(folder: str | os.PathLike, name: str) -> list[Path]:
    """Temporary files that an interrupted atomic write of ``folder/name`` left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".{name}.*.tmp") if p.is_file())
