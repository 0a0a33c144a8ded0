"""Datasets and deterministic batching (sw.data)."""

import pickle

import numpy as np
import pytest
import torch

from sw import data


def test_digits_split_shapes_and_normalisation():
    d = data.load_digits()
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert abs(float(d.train_x.mean())) < 1e-4 and abs(float(d.train_x.std()) - 1) < 1e-3
    assert set(d.train_y.tolist()) == set(range(10)) and d.num_classes == 10
    assert d.sample_shape == (1, 8, 8)
    e = data.load_digits()
    assert torch.equal(d.train_x, e.train_x) and torch.equal(d.test_y, e.test_y)


def test_batches_are_deterministic_and_resumable():
    d = data.load_digits()
    a = list(d.batches("train", 100, seed=3, epoch=2))
    b = list(d.batches("train", 100, seed=3, epoch=2))
    c = list(d.batches("train", 100, seed=3, epoch=3))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b, strict=True))
    assert not torch.equal(a[0][1], c[0][1])
    tail = list(d.batches("train", 100, seed=3, epoch=2, start=5))
    assert len(tail) == len(a) - 5 and torch.equal(tail[0][0], a[5][0])
    assert sum(len(y) for _, y in a) == 1437
    test = list(d.batches("test", 100))
    assert torch.equal(torch.cat([y for _, y in test]), d.test_y)  # test split in order


def test_epoch_indices_shard_like_distributed_sampler():
    shards = [data.epoch_indices(10, seed=1, epoch=0, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded by wrapping to 12
    assert set(torch.cat(shards).tolist()) == set(range(10))
    full = data.epoch_indices(10, seed=1, epoch=0)
    assert sorted(full.tolist()) == list(range(10))


def test_augment_crop_and_flip():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = data.augment_batch(x, g1, padding=2), data.augment_batch(x, g2, padding=2)
    assert a.shape == x.shape and torch.equal(a, b)
    # no padding, flip only: every sample is the original or its mirror image
    f = data.augment_batch(x, torch.Generator().manual_seed(0), padding=0)
    for i in range(2):
        assert torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(2))
    # crop only: each output is a window of the zero-padded input
    c = data.augment_batch(x, torch.Generator().manual_seed(1), padding=2, flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert any(torch.equal(c[i], padded[i, :, dy:dy + 6, dx:dx + 6])
                   for dy in range(5) for dx in range(5))


def _write_fake_cifar(folder, name, n_per_file=6):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        files, key, classes = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], \
            b"labels", 10
    else:
        files, key, classes = ["train", "test"], b"fine_labels", 100
    for f in files:
        d = {b"data": rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8),
             key: rng.integers(0, classes, n_per_file).tolist()}
        with open(folder / f, "wb") as fh:
            pickle.dump(d, fh)


def test_cifar10_reader_with_fake_pickles(tmp_path):
    _write_fake_cifar(tmp_path / "cifar-10-batches-py", "cifar10")
    d = data.load_dataset("cifar10", tmp_path)  # finds the official subfolder
    assert d.train_x.shape == (30, 3, 32, 32) and d.test_x.shape == (6, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10 and d.augment
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)
    assert torch.equal(d.train_x[:6].reshape(6, -1), torch.from_numpy(raw[b"data"]))
    x, y = next(d.batches("train", 8, seed=0))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    xt, _ = next(d.batches("test", 6))
    mean = torch.tensor(data.CIFAR_MEAN["cifar10"]).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR_STD["cifar10"]).view(1, 3, 1, 1)
    assert torch.allclose(xt, (d.test_x.float() / 255 - mean) / std)


def test_cifar100_reader_with_fake_pickles(tmp_path):
    _write_fake_cifar(tmp_path, "cifar100")
    d = data.load_cifar("cifar100", tmp_path)
    assert d.train_x.shape == (6, 3, 32, 32) and d.num_classes == 100


def test_missing_cifar_names_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere" in msg and "data_batch_1" in msg and "test_batch" in msg
    with pytest.raises(FileNotFoundError, match=r"train, test"):
        data.load_dataset("cifar100", tmp_path)


def test_corrupt_cifar_file_is_named(tmp_path):
    _write_fake_cifar(tmp_path, "cifar10")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch"):
        data.load_cifar("cifar10", tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*digits, cifar10, cifar100"):
        data.load_dataset("mnist")


def test_nan_inputs_are_rejected():
    x = torch.zeros(4, 1, 8, 8)
    x[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="train inputs contain non-finite values: 1 NaN"):
        data.Dataset("toy", x, torch.zeros(4, dtype=torch.long), torch.zeros(2, 1, 8, 8),
                     torch.zeros(2, dtype=torch.long), num_classes=10)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="labels outside"):
        data.Dataset("toy", torch.zeros(2, 1, 8, 8), torch.tensor([0, 10]),
                     torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), num_classes=10)
