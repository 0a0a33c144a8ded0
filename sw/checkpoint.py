"""Atomic, resumable training checkpoints.

A checkpoint is written atomically (``sw.atomic``: a temporary file in the same folder, flushed
and fsync'ed, then moved over the target with ``os.replace``), so a crash or a kill never
leaves a truncated checkpoint behind: the target is either the previous complete checkpoint or
the new one. A kill during the write leaves the temporary ``.<name>.*.tmp`` file, which
``sw.atomic.stale_temporaries`` finds (the trainer removes them at its next start).

File layout: one header line ``SWAT-CHECKPOINT 2 sha256=<64 hex digits> size=<bytes>\n``, then
the ``torch.save`` bytes it describes. :func:`load_checkpoint` verifies size and SHA-256 before
unpickling anything, so a flipped bit or a truncated copy is reported with the file named
instead of resuming from silently damaged weights. Files written before the header existed (a
bare ``torch.save`` zip) still load, without the integrity check.

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

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write

__all__ = [
    "FORMAT",
    "atomic_save",
    "CheckpointError",
    "get_rng_state",
    "load_checkpoint",
    "set_rng_state",
]

FORMAT = "swat-checkpoint"
VERSION = 1
MAGIC = b"SWAT-CHECKPOINT 2 "
_ZIP = b"PK\x03\x04"  # a bare torch.save file (written before the header existed)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (``sw.atomic.atomic_write``, creating its
    folders), behind a header line carrying the payload's size and SHA-256 (see the module
    docstring)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getbuffer()
    digest = hashlib.sha256(payload).hexdigest()
    header = MAGIC + f"sha256={digest} size={len(payload)}\n".encode("ascii")

    def write(f):
        f.write(header)
        f.write(payload)

    return atomic_write(path, write, parents=True)


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


def _payload(path: Path) -> bytes:
    """The verified ``torch.save`` bytes of the checkpoint file ``path``."""
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path} is empty (0 bytes), not a SWAT checkpoint")
    if data.startswith(_ZIP):
        return data  # written before checksums: loads unverified
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a SWAT checkpoint")
    end = data.find(b"\n", 0, 256)
    try:
        fields = dict(f.split("=", 1) for f in data[len(MAGIC):end].decode("ascii").split())
        digest, size = fields["sha256"], int(fields["size"])
    except (ValueError, KeyError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not a SWAT checkpoint (damaged header)") from None
    payload = data[end + 1:]
    if len(payload) != size:
        raise CheckpointError(f"{path} is truncated or damaged: {len(payload)} bytes of data, "
                              f"the header says {size}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupt: its SHA-256 checksum does not match the "
                              "contents (damaged on disk or in a copy)")
    return payload


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by the trainer.

    Raises ``FileNotFoundError`` when there is none, :class:`CheckpointError` (a ValueError)
    naming the file when it is empty, not a SWAT checkpoint, truncated or fails its checksum.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = _payload(path)
    try:
        ckpt = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not torch's advice about weights_only: it is not ours
        raise CheckpointError(f"{path} is not a SWAT checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SWAT checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt['version']} is newer than {VERSION}")
    return ckpt
