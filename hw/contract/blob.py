"""The compressed sparse ``S`` (CSC) blob the core's loader reads and the select unit writes.

Layout (little-endian 32-bit words, see ``docs/core-interface.md``):

====================  ===========================================================
word                  content
====================  ===========================================================
0                     magic ``0x53574154`` ("SWAT")
1                     ``K`` in bits 15:0, ``N`` in bits 31:16
2                     ``nnz``
3 … 3+N               column pointers ``ptr[0..N]`` (``ptr[0] = 0``, non-decreasing,
                      ``ptr[N] = nnz``)
4+N … 3+N+nnz         entries: bits 15:0 row ``k`` (< ``K``), bits 23:16 value (int8,
                      never 0), bits 31:24 zero; ``k`` strictly increasing per column
====================  ===========================================================

This module is the one definition of that layout: the encoder, the validating decoder and the
word/byte conversions. :func:`decode` rejects every violation with a :class:`DecodeError` (a
``ValueError``) whose message names each violation found and whose ``codes`` attribute lists
the matching :class:`~hw.contract.codes.LoaderError` codes. A blob longer than the layout needs
is also rejected ("trailing data", code 0: the hardware reads ``s_len`` words and ignores any
past the end of the blob).
"""

from __future__ import annotations

import sys

import numpy as np

from .codes import LoaderError

__all__ = ["MAGIC", "MAX_DIM", "HEADER_WORDS", "DecodeError", "as_numpy", "blob_len",
           "encode", "encode_words", "decode", "words", "to_bytes"]

#: First word of every blob: the bytes ``b"TAWS"``, i.e. "SWAT" read as a big-endian number.
MAGIC = 0x53574154
#: Largest ``K`` or ``N`` (16-bit header fields).
MAX_DIM = 0xFFFF
#: Header words before the column pointers: magic, ``K | N << 16``, ``nnz``.
HEADER_WORDS = 3


class DecodeError(ValueError):
    """A malformed compressed blob (or unusable arguments to :func:`decode`).

    ``problems`` lists ``(code, text)`` pairs; ``codes`` the hardware error codes among them
    (sorted; an argument error such as a list instead of bytes has no hardware code).
    """

    def __init__(self, problems):
        self.problems = list(problems)  # [(code or None, text)]
        self.codes = sorted({int(c) for c, _ in self.problems if c is not None})
        super().__init__("; ".join(t for _, t in self.problems))


def as_numpy(s) -> np.ndarray:
    """``s`` as a numpy array (numpy, torch tensor or nested sequence).

    A torch tensor can only exist if torch is already imported, so torch is looked up in
    ``sys.modules`` rather than imported (importing it costs seconds, e.g. inside the
    simulator).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(s, torch.Tensor):
        return s.detach().cpu().numpy()
    return np.asarray(s)


def blob_len(n: int, nnz: int) -> int:
    """Number of 32-bit words of a blob with ``n`` columns and ``nnz`` entries."""
    return HEADER_WORDS + 1 + n + nnz


def encode_words(s) -> np.ndarray:
    """The blob of a 2-D int8 matrix ``S[K, N]`` (numpy or torch) as ``uint32`` words.

    Values must be integers in ``[-128, 127]`` (an integer-valued float array is accepted);
    ``K`` and ``N`` at most 65535. Entries are in column-major order, rows increasing.
    """
    a = as_numpy(s)
    if a.ndim != 2:
        raise ValueError(f"encode: S must be 2-D, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        if not (a.dtype.kind == "f" and np.all(np.mod(a, 1) == 0)):
            raise ValueError(f"encode: S must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
    if a.size and (a.min() < -128 or a.max() > 127):
        raise ValueError("encode: values outside int8 range [-128, 127]")
    k, n = a.shape
    if k > MAX_DIM or n > MAX_DIM:
        raise ValueError(f"encode: K={k}, N={n}: both must be <= {MAX_DIM}")
    st = a.T
    nz_n, nz_k = np.nonzero(st)  # column-major over S, rows increasing within a column
    vals = st[nz_n, nz_k].astype(np.int64)
    nnz = len(vals)
    w = np.empty(blob_len(n, nnz), dtype=np.uint32)
    w[0] = MAGIC
    w[1] = k | (n << 16)
    w[2] = nnz
    w[3] = 0
    w[4:4 + n] = np.cumsum(np.bincount(nz_n, minlength=n))
    w[4 + n:] = (nz_k.astype(np.int64) | ((vals & 0xFF) << 16)).astype(np.uint32)
    return w


def encode(s) -> bytes:
    """The blob of ``S[K, N]`` as little-endian bytes (:func:`encode_words`)."""
    return encode_words(s).astype("<u4").tobytes()


def words(blob) -> np.ndarray:
    """View a blob (bytes-like) as little-endian ``uint32`` words (a copy, native order)."""
    b = bytes(blob)
    if len(b) % 4:
        raise ValueError(f"blob length {len(b)} is not a multiple of 4 bytes")
    return np.frombuffer(b, dtype="<u4").astype(np.uint32)


def to_bytes(w) -> bytes:
    """Inverse of :func:`words`: 32-bit words to a little-endian blob."""
    return np.asarray(w, dtype=np.uint64).astype("<u4").tobytes()


def _check_blob(blob) -> bytes:
    """``blob`` as bytes if it is bytes-like (anything with the buffer protocol), else a
    :class:`DecodeError`: a list of words or an ``int`` is not a blob (``bytes(5)`` would be
    five zero bytes)."""
    if isinstance(blob, (bytes, bytearray, memoryview)) or (
            isinstance(blob, np.ndarray) and blob.dtype != object):
        return bytes(blob)
    raise DecodeError([(None, f"decode: blob must be bytes-like (bytes, bytearray, memoryview), "
                              f"got {type(blob).__name__}")])


def _check_shape(shape) -> tuple[int, int]:
    """``(K, N)`` as two ints in ``[0, MAX_DIM]``, else a :class:`DecodeError`."""
    try:
        k, n = shape
    except (TypeError, ValueError):
        k = n = None
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))
               for x in (k, n)):
        raise DecodeError([(None, f"decode: shape must be two integers (K, N), got {shape!r}")])
    if not (0 <= k <= MAX_DIM and 0 <= n <= MAX_DIM):
        raise DecodeError([(None, f"decode: shape ({k}, {n}) outside [0, {MAX_DIM}]")])
    return int(k), int(n)


def decode(blob, shape) -> np.ndarray:
    """Decode a blob into a dense ``int8`` matrix of ``shape == (K, N)``.

    ``blob`` is bytes-like (``bytes``, ``bytearray``, ``memoryview``, a numpy array's
    buffer); ``shape`` two integers in ``[0, 65535]``.

    Raises
    ------
    DecodeError (ValueError)
        naming every violation found: bad magic, shape mismatch, column pointers, truncated,
        index range, index ordering, zero value / reserved bits, trailing data; or an argument
        that is not a blob or not a shape (with no hardware code).
    """
    K, N = _check_shape(shape)
    b = _check_blob(blob)
    E = LoaderError
    problems = []
    if len(b) % 4:
        problems.append((E.TRUNC, f"truncated: blob length {len(b)} not a multiple of 4"))
        b = b[: len(b) - len(b) % 4]
    w = np.frombuffer(b, dtype="<u4").astype(np.int64)
    if len(w) < HEADER_WORDS:
        problems.append((E.TRUNC, f"truncated: {len(w)} words, header needs 3"))
        raise DecodeError(problems)
    if w[0] != MAGIC:
        problems.append((E.MAGIC, f"bad magic 0x{int(w[0]):08x} (expected 0x{MAGIC:08x})"))
    hk, hn = int(w[1]) & 0xFFFF, int(w[1]) >> 16
    if (hk, hn) != (K, N):
        problems.append((E.SHAPE, f"shape mismatch: header K={hk}, N={hn}, expected {K}, {N}"))
    nnz = int(w[2])
    if problems:  # header unusable: stop here
        raise DecodeError(problems)
    if len(w) < 4 + N:
        problems.append((E.TRUNC, f"truncated: {len(w)} words, pointers need {4 + N}"))
        raise DecodeError(problems)
    ptr = w[3 : 4 + N]
    bad_ptr = []
    if ptr[0] != 0:
        bad_ptr.append(f"ptr[0]={int(ptr[0])} != 0")
    dec = np.nonzero(np.diff(ptr) < 0)[0]
    if len(dec):
        bad_ptr.append(f"decreasing at column {int(dec[0])}")
    if ptr[N] != nnz:
        bad_ptr.append(f"ptr[N]={int(ptr[N])} != nnz={nnz}")
    if bad_ptr:
        problems.append((E.PTR, "column pointers: " + ", ".join(bad_ptr)))
    need = blob_len(N, nnz)
    if len(w) < need:
        problems.append((E.TRUNC, f"truncated: {len(w)} words, layout needs {need}"))
    if problems:
        raise DecodeError(problems)
    ent = w[4 + N : need]
    k = ent & 0xFFFF
    v = (ent >> 16) & 0xFF
    v = np.where(v >= 128, v - 256, v)
    res = ent >> 24
    bad = np.nonzero(k >= K)[0]
    if len(bad):
        i = int(bad[0])
        problems.append((E.INDEX, f"index range: entry {i} has k={int(k[i])} >= K={K}"))
    col = np.repeat(np.arange(N), np.diff(ptr))
    same_col = col[1:] == col[:-1]
    bad = np.nonzero(same_col & (k[1:] <= k[:-1]))[0]
    if len(bad):
        i = int(bad[0]) + 1
        problems.append((E.ORDER, f"ordering: indices not strictly increasing in column "
                                  f"{int(col[i])} at entry {i}"))
    bad = np.nonzero((v == 0) | (res != 0))[0]
    if len(bad):
        i = int(bad[0])
        problems.append((E.ENTRY, f"zero value or reserved bits: entry {i} = "
                                  f"0x{int(ent[i]):08x}"))
    if len(w) > need:
        problems.append((E.NONE, f"trailing data: {len(w) - need} words past the end of "
                                 "the blob"))
    if problems:
        raise DecodeError(problems)
    out = np.zeros((K, N), dtype=np.int8)
    out[k, col] = v.astype(np.int8)
    return out
