"""Integer reference of the SWAT core (bit-exact target for the RTL).

* :func:`gemm` — ``C = D @ S`` with int64 accumulation, checked to fit int32, returned as int32.
* :func:`core_model` — a cycle-free model of one ``SwatCore`` operation on raw buffer contents:
  shape registers, the D buffer words, the S buffer words and ``s_len`` in; the C buffer words
  and the set of error codes the loader may report out. It follows the checks of the loader
  (``docs/core-interface.md``, error table) in the order the hardware performs them.
* :func:`pack_d` / :func:`unpack_c` — the D and C buffer word layouts of the core.
* :func:`ideal_cycles` — the compute bound ``mtiles * nnz / cols`` of the core's dataflow.
* :func:`schedule_cycles` — an event model of the core's dynamic schedule (items handed to the
  first free PE column, one C write per cycle), within a few percent of the RTL's ``cycles``.

The threshold-select (Top-K) integer reference lives in ``sw.int_topk``.
"""

import numpy as np

from hw.contract import words as _words
from hw.contract.blob import MAGIC, as_numpy, decode, to_bytes
from hw.contract.codes import LoaderError
from hw.contract.cycles import ideal_cycles, schedule_cycles

__all__ = ["gemm", "pack_d", "unpack_c", "core_model", "ideal_cycles", "schedule_cycles",
           "CoreResult"]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


_np = as_numpy


#: K per float32 product: every partial sum of int8 products then an integer of magnitude
#: at most ``K · 128² = 2**24``, exact in float32 (whatever the order of the additions, FMA
#: included); longer K is cut into such chunks and the chunks summed in int64. numpy's int64
#: matmul has no BLAS: checking the ~7.7 k sampled core operations of a ResNet-50 step took
#: minutes of the compare job with it, ~70 s with float64
_EXACT_F32_K = (1 << 24) // (128 * 128)


def gemm(d, s) -> np.ndarray:
    """``C = D @ S`` for int8 ``D[M, K]`` and ``S[K, N]``: int64 accumulation, int32 result.

    Raises ``ValueError`` for non-integer or out-of-int8-range operands, mismatched shapes, or a
    result that does not fit int32 (impossible for int8 operands with ``K <= 65535``).
    """
    d, s = _np(d), _np(s)
    if d.ndim != 2 or s.ndim != 2 or d.shape[1] != s.shape[0]:
        raise ValueError(f"gemm: shapes {d.shape} @ {s.shape} do not chain")
    for name, a in (("D", d), ("S", s)):
        if a.dtype.kind not in "iu":
            raise ValueError(f"gemm: {name} must be integer, got {a.dtype}")
        if a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError(f"gemm: {name} outside int8 range")
    k = d.shape[1]
    c = None
    for k0 in range(0, k, _EXACT_F32_K):  # exact in float32 BLAS per chunk (_EXACT_F32_K)
        part = (d[:, k0:k0 + _EXACT_F32_K].astype(np.float32)
                @ s[k0:k0 + _EXACT_F32_K].astype(np.float32)).astype(np.int64)
        c = part if c is None else c + part
    if c is None:  # K == 0
        c = np.zeros((d.shape[0], s.shape[1]), dtype=np.int64)
    if c.size and (c.min() < _I32_MIN or c.max() > _I32_MAX):
        raise ValueError("gemm: result overflows int32")
    return c.astype(np.int32)


def pack_d(d, rows: int) -> list[int]:
    """D buffer words as ints: word ``mt*K + k`` holds byte lane ``i`` = ``D[mt*rows + i, k]``
    (the layout of :mod:`hw.contract.words`)."""
    return _words.d_ints(_words.pack_d(_np(d).astype(np.int8), rows))


def unpack_c(words, m: int, n: int, rows: int) -> np.ndarray:
    """Inverse of the C buffer layout: word ``mt*N + n``, lane ``i`` = ``C[mt*rows + i, n]``."""
    return _words.unpack_c(words, m, n, rows)


def _stream_error_codes(w, k: int, n: int, nnz: int) -> set:
    """Codes the loader may report for the pointers and entries of a blob whose header is good.

    The dispatcher checks the pointers in order; the first bad one (``ptr[0] != 0``, a pointer
    below its predecessor or above ``nnz``, ``ptr[N] != nnz``) is error 3. Column ``c``'s
    entries stream only once ``ptr[c]`` and ``ptr[c+1]`` passed, and may be checked before the
    dispatcher reaches a later bad pointer. Each column stops at its first bad entry, whose
    code is the lowest of its violations (5 index >= K, 6 not increasing, 7 zero value or
    reserved bits). Several columns run at once, so any of their codes may come first.
    """
    ptr = w[3 : 4 + n]
    bad_ptr = None
    for i, p in enumerate(ptr):
        prev = ptr[i - 1] if i else 0
        if (p != 0 if i == 0 else (p < prev or p > nnz or (i == n and p != nnz))):
            bad_ptr = i
            break
    codes = set() if bad_ptr is None else {LoaderError.PTR}
    checked = n if bad_ptr is None else max(0, bad_ptr - 1)  # columns with both pointers good
    base = 4 + n
    for c in range(checked):
        prev_k = None
        for e in w[base + ptr[c] : base + ptr[c + 1]]:
            kk, vv, rsv = e & 0xFFFF, (e >> 16) & 0xFF, e >> 24
            if kk >= k:
                codes.add(LoaderError.INDEX)
            elif prev_k is not None and kk <= prev_k:
                codes.add(LoaderError.ORDER)
            elif vv == 0 or rsv:
                codes.add(LoaderError.ENTRY)
            else:
                prev_k = kk
                continue
            break
    return codes


class CoreResult:
    """Outcome of :func:`core_model`: ``c`` (``[M, N]`` int32, or ``None`` on error),
    ``error_codes`` (set of codes the hardware may report; ``{0}`` when well formed)."""

    def __init__(self, c, error_codes):
        self.c = c
        self.error_codes = set(error_codes)

    def __repr__(self):
        return f"CoreResult(error_codes={sorted(self.error_codes)})"


def core_model(d, s_words, *, m, k, n, s_len=None, rows=8, d_depth=None, s_depth=None,
               c_depth=None) -> CoreResult:
    """What one ``SwatCore`` operation computes, without cycles.

    Parameters
    ----------
    d : array ``[M, K]`` int8 (the D buffer contents) — or ``None`` for checks only.
    s_words : sequence of int — the S buffer words (``sw.compress.words(blob)``).
    m, k, n : the shape registers.
    s_len : number of valid S words (default ``len(s_words)``).
    rows : PE rows (M-tile height). d_depth, s_depth, c_depth : buffer depths (``None``: unlimited).

    Returns
    -------
    CoreResult
        ``c`` is ``D @ S`` when well formed. On a malformed blob, ``error_codes`` holds every code
        the hardware may report: header and fit errors are found in a fixed order (8, 4 for
        ``s_len``, 1, 2, 4, then pointers/entries); pointer and entry violations are found
        while streaming, in an order that depends on the schedule (see
        :func:`_stream_error_codes`).
    """
    s_words = [int(w) & 0xFFFFFFFF for w in s_words]
    if s_len is None:
        s_len = len(s_words)
    mtiles = -(-m // rows) if m else 0
    if (m == 0 or k == 0 or n == 0
            or (d_depth is not None and mtiles * k > d_depth)
            or (c_depth is not None and mtiles * n > c_depth)):
        return CoreResult(None, {LoaderError.FIT})
    if (s_depth is not None and s_len > s_depth) or s_len < 3 or s_len > len(s_words):
        return CoreResult(None, {LoaderError.TRUNC})
    w = s_words[:s_len]
    if w[0] != MAGIC:
        return CoreResult(None, {LoaderError.MAGIC})
    if (w[1] & 0xFFFF, w[1] >> 16) != (k, n):
        return CoreResult(None, {LoaderError.SHAPE})
    nnz = w[2]
    if 4 + n + nnz > s_len:
        return CoreResult(None, {LoaderError.TRUNC})
    codes = _stream_error_codes(w, k, n, nnz)
    if codes:
        return CoreResult(None, codes)
    s = decode(to_bytes(w[: 4 + n + nnz]), (k, n))
    if d is None:
        return CoreResult(None, {LoaderError.NONE})
    return CoreResult(gemm(d, s), {LoaderError.NONE})
