"""Fused packing kernels for the SWAT layers' compact saved tensors (C, built at first use).

Masking ``|x| >= t``, collecting the kept values and packing the 1-bit mask with stock ATen ops
takes about seven passes over an activation; unpacking in the backward three more. The C
kernels in ``sw/_pack.c`` do each in one pass (AVX-512 compress/expand where the CPU has it,
portable C elsewhere, OpenMP over chunks), with bit-identical results (values in the same
order, the same bit layout as :func:`sw.layers._packbits`). The candidate scan of an exact
whole-tensor Top-K (:func:`candidates`) is fused the same way.

Build: on first use the machine's C compiler (``$CC`` or ``gcc``, with OpenMP) compiles
``_pack.c`` into ``$SWAT_EXT_BUILD`` (default ``~/.cache/swat-ext``), in a folder keyed by the
source, the flags and the compiler version; later processes load it from there (``ctypes``, no
torch headers to compile, nothing downloaded). If there is no compiler, or ``SWAT_FUSED=0``,
:func:`available` is false and the layers keep the ATen route; :func:`status` says why.

Only contiguous float32 CPU tensors take the fused route, and only when the packed-bit format
is the one :func:`sw.layers._compact` would choose (at densities below ~1/32 the index format
wins and the ATen route runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

import torch

__all__ = [
    "Held",
    "available",
    "candidates",
    "disabled",
    "kth_largest",
    "pack",
    "portable",
    "status",
    "unpack_bits",
]

_SRC = Path(__file__).with_name("_pack.c")
_FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-fno-strict-aliasing"]
CHUNK = 65536  # as in _pack.c

_lock = threading.Lock()
_lib = None
_why = "not loaded yet"


class Held(NamedTuple):
    """A held Top-K threshold standing in for a mask: the kept set is ``|x| >= t, x != 0``."""

    threshold: float


def _build_dir() -> Path:
    return Path(os.environ.get("SWAT_EXT_BUILD") or Path.home() / ".cache" / "swat-ext")


def _compile() -> Path:
    cc = os.environ.get("CC", "gcc")
    version = subprocess.run([cc, "-dumpfullversion", "-dumpversion"], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    key = hashlib.sha256(_SRC.read_bytes() + " ".join([cc, version, *_FLAGS]).encode())
    folder = _build_dir() / key.hexdigest()[:16]
    lib = folder / "libswatpack.so"
    if lib.is_file():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(folder / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # one build at a time (pytest-xdist workers)
        if lib.is_file():
            return lib
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            r = subprocess.run([cc, *_FLAGS, str(_SRC), "-o", tmp], capture_output=True,
                               text=True, timeout=300)
            if r.returncode:
                raise OSError(f"{cc} failed: {(r.stderr or r.stdout).strip()[:300]}")
            os.replace(tmp, lib)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return lib


def _load():
    global _lib, _why
    with _lock:
        if _lib is not None or _why != "not loaded yet":
            return _lib
        if os.environ.get("SWAT_FUSED", "1") == "0":
            _why = "disabled by SWAT_FUSED=0"
            return None
        try:
            lib = ctypes.CDLL(str(_compile()))
        except (OSError, subprocess.SubprocessError) as e:
            _why = f"unavailable ({e})"
            return None
        i64, p, f32, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
        lib.swat_count_bits.argtypes = [p, i64, p, i32]
        lib.swat_unpack_bits.argtypes = [p, i64, p, p, p, i32]
        lib.swat_pack_idx.argtypes = [p, p, i64, i32, p, p, p]
        lib.swat_pack_idx.restype = i64
        lib.swat_has_avx512.restype = i32
        lib.swat_use_avx512.argtypes = [i32]
        lib.swat_pack_ge.argtypes = [p, i64, f32, p, p, p, p, i32]
        lib.swat_pack_ge.restype = i64
        lib.swat_concat.argtypes = [p, i64, p, p]
        lib.swat_kth_largest.argtypes = [p, i64, i64, p, p]
        lib.swat_kth_largest.restype = i32
        lib.swat_collect_ge.argtypes = [p, i64, f32, p, p, i32]
        lib.swat_collect_ge.restype = i64
        lib.swat_init()
        _lib, _why = lib, "in use" + (" (AVX-512)" if lib.swat_has_avx512() else "")
        return lib


@contextlib.contextmanager
def portable():
    """Within the block the kernels take their portable C paths even on an AVX-512 CPU (so
    tests cover both)."""
    lib = _load()
    if lib is None:
        yield
        return
    lib.swat_use_avx512(0)
    try:
        yield
    finally:
        lib.swat_use_avx512(1)


@contextlib.contextmanager
def disabled():
    """Within the block the layers take the ATen route (for comparisons and tests)."""
    global _lib, _why
    _load()
    saved = _lib, _why
    _lib, _why = None, "disabled in this block"
    try:
        yield
    finally:
        _lib, _why = saved


def available() -> bool:
    """Whether the fused kernels are built and loaded (builds them on the first call)."""
    return _load() is not None


def status() -> str:
    """``"in use"``, or why the ATen route is used."""
    _load()
    return _why


def _ok(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous()


_TLS = threading.local()


def _scratch(n: int) -> torch.Tensor:
    """A per-thread reusable float32 buffer of at least ``n`` elements (a fresh large
    allocation page-faults on every step)."""
    buf = getattr(_TLS, "buf", None)
    if buf is None or buf.numel() < n:
        buf = _TLS.buf = torch.empty(n, dtype=torch.float32)
    return buf


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(counts, 0) - counts


def pack(x: torch.Tensor, kept, drop_zeros: bool, dense: torch.Tensor | None = None):
    """``(values, packed bits, "bits")`` of the kept set of ``x``, or ``None`` when the fused
    route does not apply (then the caller takes the ATen route).

    ``kept`` is a :class:`Held` threshold or the ascending int64 flat indices of the kept
    elements; ``drop_zeros`` leaves kept zeros out (a :class:`Held` set has none); ``dense``
    (contiguous float32, at least ``x.numel()`` elements) receives ``x`` where kept, else 0.
    """
    lib = _load()
    if lib is None or not _ok(x) or (dense is not None and not _ok(dense)):
        return None
    n = x.numel()
    if n == 0 or n >= 2**31:
        return None
    nb = (n + 7) // 8
    d = 0 if dense is None else dense.data_ptr()
    if isinstance(kept, Held):
        counts = torch.empty((n + CHUNK - 1) // CHUNK, dtype=torch.int64)
        bits = torch.empty(nb, dtype=torch.uint8)
        scratch = _scratch(n)
        k = lib.swat_pack_ge(x.data_ptr(), n, kept.threshold, bits.data_ptr(),
                             counts.data_ptr(), scratch.data_ptr(), d, torch.get_num_threads())
        if 4 * k < nb:  # the index format is smaller: let the ATen route build it
            return None
        vals = torch.empty(k, dtype=x.dtype)
        lib.swat_concat(scratch.data_ptr(), n, counts.data_ptr(), vals.data_ptr())
        return vals, bits, "bits"
    idx = kept
    if idx.dtype != torch.int64 or not idx.is_contiguous():
        return None
    k = idx.numel()
    if 4 * k < nb:
        return None
    bits = torch.zeros(nb, dtype=torch.uint8)
    vals = torch.empty(k, dtype=x.dtype)
    if dense is not None:
        dense.reshape(-1)[:n].zero_()
    kk = lib.swat_pack_idx(x.data_ptr(), idx.data_ptr(), k, int(drop_zeros), bits.data_ptr(),
                           vals.data_ptr(), d)
    if kk != k:
        if 4 * kk < nb:
            return None
        vals = vals[:kk].clone()
    return vals, bits, "bits"


def unpack_bits(values: torch.Tensor, bits: torch.Tensor, n: int, out: torch.Tensor):
    """Write the dense tensor of ``(values, packed bits)`` into ``out[:n]`` and return it, or
    ``None`` when the fused route does not apply."""
    lib = _load()
    if lib is None or not _ok(values) or not _ok(out) or bits.dtype != torch.uint8 \
            or not bits.is_contiguous() or n >= 2**31:
        return None
    nt = torch.get_num_threads()
    counts = torch.empty((n + CHUNK - 1) // CHUNK, dtype=torch.int64)
    lib.swat_count_bits(bits.data_ptr(), n, counts.data_ptr(), nt)
    flat = out.reshape(-1)[:n]
    offsets = _offsets(counts)
    lib.swat_unpack_bits(bits.data_ptr(), n, values.data_ptr(), offsets.data_ptr(),
                         flat.data_ptr(), nt)
    return flat


def candidates(x: torch.Tensor, lo: float, buf: torch.Tensor) -> torch.Tensor | None:
    """``|x|`` of every element with ``|x| >= lo``, in stream order (a view of ``buf``, a
    float32 scratch of at least ``x.numel()`` elements), or ``None`` when the fused route does
    not apply. One pass instead of abs, compare, nonzero and take."""
    lib = _load()
    n = x.numel()
    if lib is None or not _ok(x) or not _ok(buf) or buf.numel() < n or n >= 2**31:
        return None
    counts = torch.empty((n + CHUNK - 1) // CHUNK, dtype=torch.int64)
    c = lib.swat_collect_ge(x.data_ptr(), n, lo, buf.data_ptr(), counts.data_ptr(),
                            torch.get_num_threads())
    return buf[:c]


def kth_largest(cand: torch.Tensor, k: int) -> tuple[float, int] | None:
    """``(t, n_ge)``: the k-th largest of the non-negative float32 ``cand`` and how many are
    ``>= t``, by a two-pass radix select in C (no copy, no sort); ``None`` if it does not apply.
    """
    lib = _load()
    if lib is None or not _ok(cand) or not 1 <= k <= cand.numel():
        return None
    t, n_ge = ctypes.c_float(), ctypes.c_int64()
    if lib.swat_kth_largest(cand.data_ptr(), cand.numel(), k, ctypes.byref(t),
                            ctypes.byref(n_ge)):
        return None
    return t.value, n_ge.value
