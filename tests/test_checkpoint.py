"""Atomic checkpoints and RNG state (sw.checkpoint)."""

import os
import random

import numpy as np
import pytest
import torch

from sw import checkpoint as ck


class _Boom:
    def __reduce__(self):
        raise RuntimeError("boom while pickling")


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ck.atomic_save({"format": ck.FORMAT, "version": 1, "x": torch.arange(3)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        ck.atomic_save({"format": ck.FORMAT, "bad": _Boom(), "big": torch.zeros(10_000)}, path)
    assert path.read_bytes() == before  # the previous complete checkpoint survives
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind
    assert torch.equal(ck.load_checkpoint(path)["x"], torch.arange(3))


def test_atomic_save_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c.pt"
    ck.atomic_save({"format": ck.FORMAT, "version": 1, "v": 1}, path)
    ck.atomic_save({"format": ck.FORMAT, "version": 1, "v": 2}, path)
    assert ck.load_checkpoint(path)["v"] == 2
    ck.atomic_write_text("hello\n", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_text() == "hello\n"


def test_rng_state_roundtrip_through_a_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ck.get_rng_state()
    ck.atomic_save({"format": ck.FORMAT, "version": 1, "rng": [state]}, tmp_path / "r.pt")
    a = (torch.rand(4), np.random.rand(3), [random.random() for _ in range(3)])
    ck.set_rng_state(ck.load_checkpoint(tmp_path / "r.pt")["rng"][0])  # weights_only load
    b = (torch.rand(4), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        ck.load_checkpoint(tmp_path)  # a folder means <folder>/checkpoint.pt
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SWAT training checkpoint"):
        ck.load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        ck.load_checkpoint(tmp_path / "junk.pt")
