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

import math

import numpy as np

from . import compress as _c

__all__ = ["gemm", "pack_d", "unpack_c", "core_model", "ideal_cycles", "schedule_cycles",
           "CoreResult"]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


_np = _c._as_numpy


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
    c = d.astype(np.int64) @ s.astype(np.int64)
    if c.size and (c.min() < _I32_MIN or c.max() > _I32_MAX):
        raise ValueError("gemm: result overflows int32")
    return c.astype(np.int32)


def pack_d(d, rows: int) -> list[int]:
    """D buffer words: word ``mt*K + k`` holds byte lane ``i`` = ``D[mt*rows + i, k]``."""
    d = _np(d).astype(np.int64)
    M, K = d.shape
    mtiles = -(-M // rows)
    pad = np.zeros((mtiles * rows, K), dtype=np.int64)
    pad[:M] = d
    lanes = (pad & 0xFF).reshape(mtiles, rows, K)  # [mt, i, k]
    words = np.zeros((mtiles, K), dtype=object)
    for i in range(rows):
        words = words + (lanes[:, i, :].astype(object) << (8 * i))
    return [int(w) for w in words.reshape(-1)]


def unpack_c(words, m: int, n: int, rows: int) -> np.ndarray:
    """Inverse of the C buffer layout: word ``mt*N + n``, lane ``i`` = ``C[mt*rows + i, n]``."""
    mtiles = -(-m // rows)
    c = np.zeros((mtiles * rows, n), dtype=np.int64)
    for mt in range(mtiles):
        for col in range(n):
            w = int(words[mt * n + col])
            for i in range(rows):
                lane = (w >> (32 * i)) & 0xFFFFFFFF
                c[mt * rows + i, col] = lane - (1 << 32) if lane >> 31 else lane
    return c[:m].astype(np.int32)


def ideal_cycles(m: int, nnz: int, rows: int, cols: int) -> float:
    """Lower bound of the core's dataflow: one PE-column cycle per (M-tile, non-zero) pair."""
    return math.ceil(m / rows) * nnz / cols


def schedule_cycles(s, m: int, rows: int = 8, cols: int = 8, *, start_latency: int = 13,
                    drain_latency: int = 10) -> int:
    """Estimated ``cycles`` of one ``SwatCore`` operation on ``S`` (dense ``[K, N]`` array).

    Work items ``(mt, n)`` in order go to the PE column that becomes free first (lowest index
    on a tie); an item takes ``nnz(S[:, n])`` cycles (one for an empty column's zero token);
    each finished item needs one cycle of the single C write port. Constants: ``start_latency``
    (``start`` → first entry read) and ``drain_latency`` (last entry read → ``done``).
    Not modelled: the per-column result credit (``hold_depth`` results in flight, ~11-cycle
    round trip), which slows items shorter than about ``11 / hold_depth`` entries when there are
    too few PE columns to saturate the C port; the estimate is then low.
    """
    import heapq

    s = _np(s)
    lens = np.maximum((s != 0).sum(axis=0), 1).astype(int)
    mtiles = -(-m // rows)
    free = [(start_latency, j) for j in range(cols)]
    heapq.heapify(free)
    ends = []
    t_disp = start_latency
    for _ in range(mtiles):
        for n_len in lens:
            t_free, j = heapq.heappop(free)
            t0 = max(t_free, t_disp)
            t_disp = t0 + 1 if t0 == t_disp else t_disp  # one descriptor per cycle
            t1 = t0 + int(n_len)
            ends.append(t1)
            heapq.heappush(free, (t1, j))
    port = 0
    for e in sorted(ends):
        port = max(port, e) + 1
    return int(port - 1 + drain_latency)


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
        ``s_len``, 1, 2, 4, then pointers/entries); several pointer and entry violations in
        different columns may be found in any order, as the hardware visits columns dynamically.
    """
    s_words = [int(w) & 0xFFFFFFFF for w in s_words]
    if s_len is None:
        s_len = len(s_words)
    mtiles = -(-m // rows) if m else 0
    if (m == 0 or k == 0 or n == 0
            or (d_depth is not None and mtiles * k > d_depth)
            or (c_depth is not None and mtiles * n > c_depth)):
        return CoreResult(None, {_c.ERR_FIT})
    if (s_depth is not None and s_len > s_depth) or s_len < 3 or s_len > len(s_words):
        return CoreResult(None, {_c.ERR_TRUNC})
    w = s_words[:s_len]
    if w[0] != _c.MAGIC:
        return CoreResult(None, {_c.ERR_MAGIC})
    if (w[1] & 0xFFFF, w[1] >> 16) != (k, n):
        return CoreResult(None, {_c.ERR_SHAPE})
    nnz = w[2]
    if 4 + n + nnz > s_len:
        return CoreResult(None, {_c.ERR_TRUNC})
    try:
        s = _c.decode(_c.to_bytes(w[: 4 + n + nnz]), (k, n))
    except _c.DecodeError as e:
        return CoreResult(None, set(e.codes))
    if d is None:
        return CoreResult(None, {_c.ERR_NONE})
    return CoreResult(gemm(d, s), {_c.ERR_NONE})
