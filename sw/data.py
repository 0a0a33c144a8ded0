"""Datasets for the training CLI: scikit-learn's bundled 8x8 digits (the default; nothing to
download) and CIFAR-10 / CIFAR-100 read from a local folder in the official python-pickle format.

All data live in memory as tensors. Batches come from :meth:`Dataset.batches`, whose order and
augmentation are a pure function of ``(seed, epoch, rank, world_size)``: the data-order state
of a run is just ``(seed, epoch)``, so a run resumed at an epoch boundary sees exactly the
batches the uninterrupted run would have seen, and DistributedDataParallel ranks see disjoint
shards of the same permutation (the ``DistributedSampler`` rule: pad by wrapping, then stride).

Digits split: ``sklearn.model_selection.train_test_split(test_size=0.2, stratify=y,
random_state=0)`` -> 1437 train / 360 test; pixels scaled to [0, 1] by /16 and standardised with
the training set's mean and standard deviation; shape ``[N, 1, 8, 8]``.

CIFAR: stored as uint8 ``[N, 3, 32, 32]``; training batches get the standard augmentation
(zero-padding 4 + random 32x32 crop, random horizontal flip), then every batch is scaled to
[0, 1] and normalised per channel with the usual CIFAR mean/std.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "Dataset",
    "augment_batch",
    "check_finite",
    "default_data_dir",
    "epoch_indices",
    "load_cifar",
    "load_dataset",
    "load_digits",
]

DATASETS = ("digits", "cifar10", "cifar100")

CIFAR_MEAN = {
    "cifar10": (0.4914, 0.4822, 0.4465),
    "cifar100": (0.5071, 0.4865, 0.4409),
}
CIFAR_STD = {
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2673, 0.2564, 0.2762),
}
_CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "cifar-10-batches-py"),
    "cifar100": (["train"], ["test"], "cifar-100-python"),
}


def default_data_dir() -> Path:
    """``$SWAT_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("SWAT_DATA", "data"))


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if ``x`` holds NaN or infinite values."""
    if x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            nan = int(torch.isnan(x).sum())
            inf = int(bad.sum()) - nan
            raise ValueError(
                f"{what} contain non-finite values: {nan} NaN and {inf} infinite "
                f"of {x.numel()} elements"
            )


def _mix(*ints: int) -> int:
    """A 63-bit seed from a tuple of integers (splitmix64-style), stable across runs."""
    m = 0xFFFFFFFFFFFFFFFF
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h ^= ((int(v) & m) + 0x9E3779B97F4A7C15 + ((h << 6) & m) + (h >> 2)) & m
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & m
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & m
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_indices(n: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """Sample indices rank ``rank`` visits in ``epoch``: a permutation seeded by
    ``(seed, epoch)``, padded by wrapping to a multiple of ``world_size``, strided by rank."""
    if shuffle:
        g = torch.Generator().manual_seed(_mix(seed, epoch))
        perm = torch.randperm(n, generator=g)
    else:
        perm = torch.arange(n)
    total = math.ceil(n / world_size) * world_size
    if total > n:
        perm = torch.cat([perm, perm[: total - n]])
    return perm[rank:total:world_size]


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                  flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and random horizontal flip of a ``[B, C, H, W]``
    batch (any dtype), drawing from ``generator``."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [B, 1, W]
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 3, 1, 2).contiguous()
    if flip:
        f = torch.rand(b, generator=generator) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x


@dataclass
class Dataset:
    """An in-memory classification dataset with deterministic, resumable batching."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None  # per-channel normalisation applied per batch
    std: tuple[float, ...] | None = None
    augment: bool = False  # standard crop+flip augmentation on training batches
    scale: float = 1.0  # divide raw values by this before normalising (255 for uint8 images)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4:
                raise ValueError(
                    f"{self.name} {split} inputs must be [N, C, H, W], got {tuple(x.shape)}"
                )
            if len(x) != len(y):
                raise ValueError(f"{self.name} {split}: {len(x)} inputs but {len(y)} labels")
            if len(x) == 0:
                raise ValueError(f"{self.name} {split} split is empty")
            check_finite(x, f"{self.name} {split} inputs")
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(
                    f"{self.name} {split} labels outside [0, {self.num_classes}): "
                    f"min {int(y.min())}, max {int(y.max())}"
                )

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def __len__(self) -> int:
        return len(self.train_x)

    def num_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        n = len(self.train_x if split == "train" else self.test_x)
        return math.ceil(math.ceil(n / world_size) / batch_size)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x / self.scale
        if self.mean is not None:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def batches(self, split: str = "train", batch_size: int = 128, *, seed: int = 0,
                epoch: int = 0, shuffle: bool | None = None, augment: bool | None = None,
                rank: int = 0, world_size: int = 1, start: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)`` batches of ``split``; ``start`` skips the first batches.

        Training batches are shuffled and (for CIFAR) augmented by default; the test split is
        neither. Everything random is drawn from generators seeded by
        ``(seed, epoch, rank, batch index)``, never from the global RNG.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        train = split == "train"
        shuffle = train if shuffle is None else shuffle
        augment = (train and self.augment) if augment is None else augment
        x_all = self.train_x if train else self.test_x
        y_all = self.train_y if train else self.test_y
        idx = epoch_indices(len(x_all), seed=seed, epoch=epoch, shuffle=shuffle, rank=rank,
                            world_size=world_size)
        for b, i in enumerate(range(0, len(idx), batch_size)):
            if b < start:
                continue
            sel = idx[i:i + batch_size]
            x = x_all[sel]
            if augment:
                g = torch.Generator().manual_seed(_mix(seed, epoch, rank, b, 0xA06))
                x = augment_batch(x, g)
            yield self._prepare(x), y_all[sel]


def load_digits(test_size: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), split deterministically."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    d = _load()
    x = d.data.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, stratify=y,
                                          random_state=split_seed)
    mean, std = float(xtr.mean()), float(xtr.std())
    xtr = (xtr - mean) / std
    xte = (xte - mean) / std
    return Dataset(
        name="digits",
        train_x=torch.from_numpy(xtr).reshape(-1, 1, 8, 8).contiguous(),
        train_y=torch.from_numpy(ytr),
        test_x=torch.from_numpy(xte).reshape(-1, 1, 8, 8).contiguous(),
        test_y=torch.from_numpy(yte),
        num_classes=10,
    )


def _find_cifar_dir(root: Path, name: str) -> Path | None:
    train_files, test_files, sub = _CIFAR_FILES[name]
    for cand in (root, root / sub):
        if all((cand / f).is_file() for f in train_files + test_files):
            return cand
    return None


def _read_pickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    # The official archives are python pickles; only read folders you trust.
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"cannot read CIFAR pickle {path}: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise ValueError(f"{path}: missing key 'data' or {label_key!r} (has {sorted(d)})")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must be [N, 3072] uint8, got {data.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 (``data_batch_1..5``, ``test_batch``) or CIFAR-100 (``train``, ``test``) from
    ``data_dir`` or its ``cifar-10-batches-py`` / ``cifar-100-python`` subfolder."""
    if name not in _CIFAR_FILES:
        raise ValueError(f"unknown CIFAR dataset {name!r}; expected 'cifar10' or 'cifar100'")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    train_files, test_files, sub = _CIFAR_FILES[name]
    folder = _find_cifar_dir(root, name)
    if folder is None:
        raise FileNotFoundError(
            f"{name} not found in {root.resolve()} (nor in {root.resolve() / sub}): expected the "
            f"python-pickle files {', '.join(train_files + test_files)} from the official "
            f"'{sub}' archive; pass the folder with --data-dir (or set SWAT_DATA)"
        )
    label_key = "labels" if name == "cifar10" else "fine_labels"
    num_classes = 10 if name == "cifar10" else 100
    parts = [_read_pickle(folder / f, label_key) for f in train_files]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    tparts = [_read_pickle(folder / f, label_key) for f in test_files]
    xte = np.concatenate([p[0] for p in tparts])
    yte = np.concatenate([p[1] for p in tparts])
    return Dataset(
        name=name,
        train_x=torch.from_numpy(xtr),
        train_y=torch.from_numpy(ytr),
        test_x=torch.from_numpy(xte),
        test_y=torch.from_numpy(yte),
        num_classes=num_classes,
        mean=CIFAR_MEAN[name],
        std=CIFAR_STD[name],
        augment=True,
        scale=255.0,
    )


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """``"digits"`` (bundled, no download), ``"cifar10"`` or ``"cifar100"`` (local folder)."""
    key = str(name).strip().lower().replace("-", "")
    if key == "digits":
        return load_digits()
    if key in ("cifar10", "cifar100"):
        return load_cifar(key, data_dir)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
