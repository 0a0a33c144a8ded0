"""Integer reference of the hardware Top-K threshold select (``hw.threshold_select``).

Everything here works on quantized integers (int8 by default, any ``bits`` up to 16) with numpy
and is bit-exact with the gateware; the PyTorch golden model (``sw.topk``) is the float twin.

Tie rule (``docs/core-interface.md``)
-------------------------------------
For ``n`` elements and a target count ``k`` (``0 <= k <= n``), let ``t`` be the k-th largest
magnitude. Keep every element with ``|x| > t``; of the elements with ``|x| == t`` keep the first
``ties = k - count(|x| > t)`` in *stream order*. Magnitudes are taken in a wide type, so
``|-128| = 128`` is the largest int8 magnitude (129 magnitude bins ``0..128``). For ``k == 0``
the threshold is defined as ``t = 2**(bits-1)`` (the top bin) with ``ties = 0``, which keeps
nothing -- this is what the histogram scan "from the top until the running count reaches k"
produces, and it stays "keep nothing" when held for later tensors.

Stream order
------------
For a plain array (:func:`select_mask`) stream order is the row-major (C) flattening order.
For a matrix ``S[K, N]`` that is compressed (:func:`compress_selected`) the hardware receives the
matrix *column by column*: stream order is the column-major (Fortran) order of ``S``, which is the
row-major order of ``S.T``. In the forward pass ``S = Wsᵀ`` so the stream is the row-major order of
the weight tensor ``W[F, K]`` itself, the same order ``sw.topk`` uses on the weights.

Transposed blob (input-gradient pass)
-------------------------------------
The forward GEMM uses ``S = Wsᵀ`` and the input-gradient GEMM ``S = Ws``, the transpose. Streaming
the transpose re-orders the ties, so a tie budget would pick other ties there. Instead the
hardware remembers the *cut*: the position ``(row, col)`` in ``S`` of the last tie it kept
(:func:`last_kept_tie`), and in transposed mode keeps a tie of ``S.T`` iff its position in ``S``'s
stream order is not after the cut, which reproduces the forward mask exactly
(:func:`compress_transposed`).

Indexed pass (im2col of a selected tensor)
-----------------------------------------
The weight-gradient GEMM's ``S`` is ``im2col(As)``: every element of the tensor ``A`` appears up
to ``R*S`` times, in im2col order. A tie budget counted on that stream would keep other ties
than ``im2col(select(A))``. Instead the hardware streams ``im2col(A)`` with a side band: the
*source index* of every element, its position in the row-major order of ``A``
(:func:`stream_matrix` streams ``A`` in that order for the selection pass, whose cut is then
such a position, :func:`last_kept_tie_index`). A tie is kept iff its source index is not after
the cut (:func:`select_mask_indexed`, :func:`compress_indexed`), which gives
``im2col(select(A))`` word for word.

Held threshold (Top-K period, paper Appendix A.6)
-------------------------------------------------
Within a Top-K period only the keep/compress pass runs, with the ``(t, ties)`` computed at the
start of the period. The rule with a held ``(t, ties)`` is the same rule: keep every ``|x| > t``
and the first ``ties`` elements with ``|x| == t`` in stream order (all of them if there are
fewer). The kept count is therefore ``count(|x| > t) + min(ties, count(|x| == t))``, which is no
longer exactly ``k`` once the tensor has changed; on the tensor the threshold was computed on it
is exactly ``k`` and the kept set equals the fresh selection. See :func:`select_mask_threshold`.
"""

import math

import numpy as np

from hw.contract.blob import MAGIC, blob_len, encode_words

__all__ = [
    "MAGIC",
    "k_from_density",
    "magnitudes",
    "histogram_int",
    "threshold_int",
    "kth_magnitude_int",
    "select_mask",
    "select_mask_threshold",
    "stream_order",
    "compress_selected",
    "compress_threshold",
    "last_kept_tie",
    "compress_transposed",
    "stream_matrix",
    "last_kept_tie_index",
    "select_mask_indexed",
    "compress_indexed",
    "encode_csc_words",
    "blob_words",
]

def _check_bits(bits):
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")


def _as_int_array(q, bits):
    _check_bits(bits)
    a = np.asarray(q)
    if a.dtype.kind not in "iu":
        raise ValueError(f"expected an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"values outside the int{bits} range [{lo}, {hi}]")
    return a


def _check_k(k, n):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n={n}], got {k}")
    return k


def k_from_density(density, n):
    """``k = ceil(density * n)`` clamped to ``[0, n]`` (``docs/core-interface.md``).

    Same arithmetic as ``sw.topk.kept_count`` (``density * n`` rounded to 6 decimals before the
    ceiling, so ``k_from_density(0.3, 10) == 3`` despite ``0.3 * 10 == 3.0000000000000004``),
    without importing torch. ``density`` must lie in ``[0, 1]``.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise ValueError(f"density must be a number in [0, 1], got {density!r}") from None
    if math.isnan(d) or not 0.0 <= d <= 1.0:
        raise ValueError(f"density must lie in [0, 1], got {density!r}")
    if n == 0:
        return 0
    return max(0, min(n, math.ceil(round(d * n, 6))))


def magnitudes(q, bits=8):
    """``|q|`` as int64 (so ``|-128| == 128``), after a range check of ``q`` against ``bits``;
    int16 for int8 codes (in range by their type; a quarter of the memory traffic on the
    compare job's large activations)."""
    a = np.asarray(q)
    if bits == 8 and a.dtype == np.int8:
        out = a.astype(np.int16)
        return np.abs(out, out=out)
    return np.abs(_as_int_array(q, bits))


def histogram_int(q, bits=8):
    """Magnitude histogram: ``h[m] = count(|q| == m)`` for ``m`` in ``0 .. 2**(bits-1)``."""
    mag = magnitudes(q, bits).ravel()
    return np.bincount(mag, minlength=(1 << (bits - 1)) + 1).astype(np.int64)


def threshold_int(q, k, bits=8):
    """``(t, ties)`` as the hardware computes them by a histogram scan from the top bin.

    ``t`` is the first bin ``b`` (scanning ``2**(bits-1)`` down to ``0``) where
    ``count(|q| > b) + h[b] >= k``, and ``ties = k - count(|q| > t)`` (``0 <= ties <= h[t]``).
    For ``k == 0`` this gives ``t = 2**(bits-1)``, ``ties = 0``.
    """
    h = histogram_int(q, bits)
    k = _check_k(k, int(h.sum()))
    above = 0
    for b in range(len(h) - 1, -1, -1):
        if above + int(h[b]) >= k:
            return b, k - above
        above += int(h[b])
    raise AssertionError("unreachable: k <= n")  # pragma: no cover


def kth_magnitude_int(q, k, bits=8):
    """The k-th largest magnitude of ``q`` by histogram (``2**(bits-1)`` for ``k == 0``)."""
    return threshold_int(q, k, bits)[0]


def select_mask_threshold(q, t, ties, bits=8):
    """Keep mask (same shape as ``q``) for a given -- e.g. held -- threshold ``(t, ties)``.

    Keeps ``|x| > t`` and the first ``ties`` elements with ``|x| == t`` in row-major order.
    """
    mag = magnitudes(q, bits)
    t, ties = int(t), int(ties)
    if not 0 <= t <= (1 << (bits - 1)):
        raise ValueError(f"threshold t={t} outside [0, {1 << (bits - 1)}]")
    if ties < 0:
        raise ValueError(f"ties must be >= 0, got {ties}")
    flat = mag.ravel()  # C order
    keep = flat > t
    if ties:  # the first `ties` equal ones (positions only: no running count of the tensor)
        keep[np.flatnonzero(flat == t)[:ties]] = True
    return keep.reshape(mag.shape)


def select_mask(q, k, bits=8):
    """Keep mask of the Top-k by magnitude with the tie rule, stream order = row-major."""
    t, ties = threshold_int(q, k, bits)
    return select_mask_threshold(q, t, ties, bits)


def stream_order(q2d):
    """The order in which the hardware receives ``S[K, N]``: column by column (``S.T`` flat)."""
    a = np.asarray(q2d)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {a.shape}")
    return a.T.ravel()


def blob_words(shape, nnz):
    """Number of 32-bit words of a compressed-S blob: ``4 + N + nnz``."""
    return blob_len(int(shape[1]), int(nnz))


def encode_csc_words(s):
    """Compressed-S words (uint32 array) of a sparse int8 matrix ``s[K, N]``.

    The encoder of :mod:`hw.contract.blob` (the bytes of ``sw.compress.encode``), after this
    module's range check; ``K`` and ``N`` must be in ``1 .. 65535``.
    """
    s = _as_int_array(s, 8)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {s.shape}")
    K, N = s.shape
    if not (0 < K < 1 << 16 and 0 < N < 1 << 16):
        raise ValueError(f"shape {s.shape} does not fit the 16-bit header fields")
    return encode_words(s)


def compress_threshold(q2d, t, ties):
    """Blob (``bytes``, little-endian words) the hardware emits for ``S[K, N]`` with ``(t, ties)``.

    The selection runs in stream order (column-major of ``S``); kept zeros are dropped.
    """
    s = _as_int_array(q2d, 8)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {s.shape}")
    keep_t = select_mask_threshold(s.T, t, ties)  # row-major of S.T == stream order
    sparse = np.where(keep_t.T, s, 0)
    return encode_csc_words(sparse).astype("<u4").tobytes()


def compress_selected(q2d, k):
    """Blob (``bytes``) the hardware emits for ``S[K, N]`` and target count ``k``.

    ``(t, ties) = threshold_int(S, k)`` (the histogram does not depend on order), then
    :func:`compress_threshold`. ``nnz <= k``; ``nnz == k`` unless zeros were among the kept.
    """
    t, ties = threshold_int(q2d, k)
    return compress_threshold(q2d, t, ties)


def last_kept_tie(q2d, t, ties):
    """``(row, col)`` in ``S[K, N]`` of the last tie (``|x| == t``) kept in stream order, or
    ``None`` when no tie is kept -- the hardware's ``cut_row, cut_col, cut_any``."""
    s = _as_int_array(q2d, 8)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {s.shape}")
    keep_t = select_mask_threshold(s.T, t, ties)  # [N, K], stream order
    tie_t = keep_t & (np.abs(s.T) == int(t))
    idx = np.flatnonzero(tie_t)
    if idx.size == 0:
        return None
    col, row = divmod(int(idx[-1]), s.shape[0])
    return row, col


def compress_transposed(q2d, t, ties):
    """Blob of ``S.T`` (``[N, K]``) keeping exactly the elements the selection on ``S`` keeps.

    What the hardware writes in transposed mode when ``S.T`` is streamed column by column with
    the cut of ``S`` (:func:`last_kept_tie`): ``decode(blob, (N, K)) == decode(
    compress_threshold(S, t, ties), (K, N)).T``.
    """
    s = _as_int_array(q2d, 8)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {s.shape}")
    keep = select_mask_threshold(s.T, t, ties).T
    return encode_csc_words(np.where(keep, s, 0).T).astype("<u4").tobytes()


def stream_matrix(q):
    """A matrix ``S[K, N]`` whose stream order (column by column) is the row-major order of
    ``q``: ``S = q.reshape(N, K).T`` with the largest ``K <= 65535`` dividing ``q.size`` such
    that ``N <= 65535`` too (the 16-bit ``rows``/``cols`` of a command). The selection of ``S``
    is then that of ``q`` (:func:`select_mask`) and its cut a position in ``q``."""
    a = np.asarray(q)
    n = a.size
    for k in range(min(n, 0xFFFF), 0, -1):
        if n % k == 0:
            if n // k > 0xFFFF:
                break
            return a.reshape(n // k, k).T
    raise ValueError(f"{n} elements do not fit a [K, N] matrix with K, N <= 65535")


def last_kept_tie_index(q, t, ties):
    """Position in the row-major order of ``q`` of the last tie (``|x| == t``) kept by
    ``(t, ties)``, or ``None`` -- the hardware's ``cut_index`` (with ``cut_any``) after a pass
    2 on :func:`stream_matrix` ``(q)``."""
    keep = select_mask_threshold(q, t, ties).ravel()
    idx = np.flatnonzero(keep & (magnitudes(q).ravel() == int(t)))
    return int(idx[-1]) if idx.size else None


def select_mask_indexed(q, index, t, cut_index, bits=8):
    """Keep mask of an indexed pass: ``|x| > t``, and ``|x| == t`` where ``index <= cut_index``
    (no tie when ``cut_index`` is ``None``). ``index`` (same shape as ``q``) is each element's
    source position; it is compared as an unsigned 32-bit number, as in the hardware."""
    mag = magnitudes(q, bits)
    index = np.asarray(index, dtype=np.int64) & 0xFFFFFFFF
    if index.shape != mag.shape:
        raise ValueError(f"index shape {index.shape} differs from the values' {mag.shape}")
    tie = mag == int(t)
    if cut_index is None:
        return mag > int(t)
    return (mag > int(t)) | (tie & (index <= int(cut_index)))


def compress_indexed(q2d, index, t, cut_index):
    """Blob (``bytes``) the hardware writes for ``S[K, N]`` streamed with the source indices
    ``index[K, N]`` in an indexed pass (``by_index``) with threshold ``t`` and the cut
    ``cut_index``. With ``S = im2col(A)``, ``index = im2col`` of the positions of ``A``, ``(t,
    ties) = threshold_int(A, k)`` and ``cut_index = last_kept_tie_index(A, t, ties)`` this is
    ``encode_csc_words(im2col(select(A, k)))``."""
    s = _as_int_array(q2d, 8)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D [K, N] matrix, got shape {s.shape}")
    keep = select_mask_indexed(s, index, t, cut_index)
    return encode_csc_words(np.where(keep, s, 0)).astype("<u4").tobytes()
