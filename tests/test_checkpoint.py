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
    with pytest.raises(ck.CheckpointError, match=f"^{tmp_path / 'other.pt'} is not a SWAT "
                       "checkpoint$"):
        ck.load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("content", [b"\x00garbage", bytes(range(256)) * 40,
                                     b"epoch,step,lr\n1,23,0.1\n", b"PK\x03\x04junk"])
def test_random_bytes_or_text_are_not_a_checkpoint(tmp_path, content):
    (tmp_path / "junk.pt").write_bytes(content)
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_checkpoint(tmp_path / "junk.pt")
    assert str(e.value) == f"{tmp_path / 'junk.pt'} is not a SWAT checkpoint"  # no torch advice


def test_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_checkpoint(tmp_path)
    assert str(e.value) == f"{tmp_path / 'checkpoint.pt'} is empty (0 bytes), not a SWAT checkpoint"


def _saved(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ck.atomic_save({"format": ck.FORMAT, "version": 1, "w": torch.linspace(-1, 1, 1000)}, path)
    return path, bytearray(path.read_bytes())


def test_every_single_bit_flip_in_the_payload_is_caught(tmp_path):
    path, data = _saved(tmp_path)
    start = data.index(b"\n") + 1
    step = max(1, (len(data) - start) // 97)
    for pos in range(start, len(data), step):  # ~100 positions spread over the whole payload
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            path.write_bytes(bad)
            with pytest.raises(ck.CheckpointError) as e:
                ck.load_checkpoint(path)
            assert str(e.value) == (f"{path} is corrupt: its SHA-256 checksum does not match "
                                    "the contents (damaged on disk or in a copy)")


def test_truncated_and_damaged_header(tmp_path):
    path, data = _saved(tmp_path)
    path.write_bytes(data[:-10])
    with pytest.raises(ck.CheckpointError, match=r"is truncated or damaged: \d+ bytes of data, "
                       r"the header says \d+$"):
        ck.load_checkpoint(path)
    path.write_bytes(data.replace(b"sha256=", b"sha265="))
    with pytest.raises(ck.CheckpointError, match=r"is not a SWAT checkpoint \(damaged header\)$"):
        ck.load_checkpoint(path)


def test_header_and_legacy_files(tmp_path):
    path, data = _saved(tmp_path)
    assert data.startswith(b"SWAT-CHECKPOINT 2 sha256=")
    legacy = tmp_path / "legacy.pt"  # written before the header: loads, unverified
    torch.save({"format": ck.FORMAT, "version": 1, "v": 3}, legacy)
    assert ck.load_checkpoint(legacy)["v"] == 3
