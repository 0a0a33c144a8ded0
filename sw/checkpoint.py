"""Atomic, resumable training checkpoints.

A checkpoint is one ``torch.save`` file written to a temporary file in the same folder, flushed
and fsync'ed, then moved over the target with ``os.replace`` (atomic on POSIX and Windows), so a
crash or a kill never leaves a truncated checkpoint behind: the target is either the previous
complete checkpoint or the new one.

Contents (all plain tensors / Python containers; loadable with ``weights_only=True``):

``format``        ``"swat-checkpoint"``, ``version``
``model``         the model's ``state_dict`` (unwrapped from DistributedDataParallel)
``optimizer``     ``optimizer.state_dict()``
``scheduler``     ``scheduler.state_dict()`` (per-iteration step count)
``rng``           list, one entry per rank, of the torch / numpy / python RNG states
``data``          data-order state ``{"seed", "epoch", "batch"}``: the next batch to train;
                  the order of an epoch is a pure function of ``(seed, epoch, rank)``
``step``          optimisation steps done so far
``partial``       running train-metric sums of an unfinished epoch (or ``None``)
``history``       per-epoch metric records so far
``config``        the training configuration as a dict
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "atomic_save",
    "atomic_write_text",
    "get_rng_state",
    "load_checkpoint",
    "set_rng_state",
]

FORMAT = "swat-checkpoint"
VERSION = 1


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file + ``os.replace``)."""
    return _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def get_rng_state() -> dict:
    """torch, numpy and python RNG states as checkpoint-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore states produced by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by the trainer; raises ``FileNotFoundError`` / ``ValueError``
    with the path named when it is missing or not a SWAT checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the path named
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a SWAT training checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt['version']} is newer than {VERSION}")
    return ckpt
