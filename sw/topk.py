"""Top-K sparsification (SWAT paper §3, Appendix A.1, A.5, A.6).

Kept count
    A selection group of ``n`` elements at density ``d`` keeps exactly ``k = kept_count(n, d)``
    elements: ``k = ceil(d * n)`` clamped to ``[0, n]``. ``d * n`` is rounded to 6 decimals before
    the ceiling, so that floating-point noise such as ``(1 - 0.3) * 10 == 7.000000000000001`` does
    not keep an extra element (``kept_count(10, 1 - 0.3) == 7``).

Tie rule (docs/core-interface.md, shared with the integer reference and the hardware)
    With ``t`` the k-th largest magnitude of the group, keep every element with ``|x| > t``; of
    the elements with ``|x| == t`` keep the first ``k - count(|x| > t)`` in row-major (C)
    flattening order of the group. Zero is a legal magnitude: if ``t == 0`` the kept set contains
    zeros (so the non-zero count of the result is ``<= k``).

Ties "keep" (the authors' code, float model only)
    ``ties="keep"`` keeps every element with ``|x| >= t`` (the k-th largest magnitude): more
    than ``k`` when several elements tie at ``t`` (and, when ``t == 0``, every zero of the
    group). It is what the authors' ``topk/drop.py`` does; the default ``ties="exact"`` keeps
    exactly ``k`` because the hardware's fixed-size compressed buffers need that.

Threshold by selection
    ``t`` is found with ``torch.kthvalue`` (a selection, O(n) average), never by a full sort.
    Whole-tensor groups (``"nchw"``) of floating-point tensors with at least ``_FAST_MIN``
    elements take a faster exact route (:func:`_flat_topk`): a strided sample of ``|x|`` brackets
    the threshold, one pass collects the candidates ``|x| >= lo`` (about ``k`` plus a small
    margin), and the k-th largest and the tie rule are resolved on those candidates only. The
    result (kept set, threshold) is identical to the plain selection; if the bracket misses, the
    plain selection runs.

Selection groups (``dims``, Appendix A.5, Fig. 9)
    ``"nchw"``: the whole tensor is one group. ``"chw"``: one group per index of dim 0 (per
    sample for activations, per filter for weights). ``"hw"``: one group per index of dims 0 and
    1 (per sample-and-channel / per filter-and-channel); needs ``x.ndim >= 3``. ``"random"``: the
    null hypothesis of Fig. 9 -- a uniformly random subset of ``k`` elements of the whole tensor
    (seeded with ``generator=``).

Held thresholds (Top-K period P, Appendix A.6)
    :class:`ThresholdHolder` recomputes the threshold every ``P`` calls and holds it in between.
    On a recompute call the selection is the exact Top-K above (exact count, tie rule). On a held
    call the mask is ``|x| >= t_held`` (every tie at the held threshold is kept; zeros are never
    counted as kept when ``t_held == 0``), so the kept count follows the data and fluctuates
    around ``k`` as in the paper's Fig. 10.
"""

from __future__ import annotations

import math
import threading

import torch

from .fused import Held

__all__ = [
    "DIMS",
    "kept_count",
    "kth_magnitude",
    "topk",
    "topk_mask",
    "topk_channels",
    "topk_channels_mask",
    "topk_filters",
    "topk_filters_mask",
    "channel_l1",
    "filter_l1",
    "TIES",
    "STRUCTURES",
    "ThresholdHolder",
    "check_density",
    "check_finite",
]

DIMS = ("nchw", "chw", "hw", "random")
TIES = ("exact", "keep")
STRUCTURES = ("channel", "filter")


# --------------------------------------------------------------------------- validation


def check_density(density) -> float:
    """Return ``density`` as a float after checking it lies in ``[0, 1]``."""
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise ValueError(f"density must be a number in [0, 1], got {density!r}") from None
    if not (0.0 <= d <= 1.0) or math.isnan(d):
        raise ValueError(f"density must lie in [0, 1], got {density!r}")
    return d


def check_dims(dims: str) -> str:
    if dims not in DIMS:
        raise ValueError(f"unknown dims {dims!r}; expected one of {', '.join(DIMS)}")
    return dims


def check_ties(ties: str) -> str:
    if ties not in TIES:
        raise ValueError(f"unknown ties {ties!r}; expected one of {', '.join(TIES)}")
    return ties


def check_structure(structured) -> str | None:
    """``None`` (fine-grained), ``"channel"`` or ``"filter"``; ``True`` means ``"channel"``."""
    if structured is False or structured is None:
        return None
    if structured is True:
        return "channel"
    if structured not in STRUCTURES:
        raise ValueError(f"unknown structure {structured!r}; expected False, True or one of "
                         f"{', '.join(STRUCTURES)}")
    return structured


def check_finite(x: torch.Tensor, what: str = "input") -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN (Top-K of NaN is undefined)."""
    # One reduction first (a NaN anywhere makes the sum NaN; so may inf - inf), then the exact
    # test only when the cheap one fires.
    if x.is_floating_point() and x.numel() and bool(torch.isnan(x.sum())) and bool(
        torch.isnan(x).any()
    ):
        raise ValueError(f"{what} contains NaN; Top-K selection is undefined for NaN")


def kept_count(n: int, density: float) -> int:
    """``ceil(density * n)`` clamped to ``[0, n]`` (``d * n`` rounded to 6 decimals first)."""
    d = check_density(density)
    if n <= 0:
        return 0
    return max(0, min(int(n), math.ceil(round(d * n, 6))))


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    if x.is_floating_point():
        return x.abs()
    # |-128| does not fit int8: widen integers first.
    return x.to(torch.int64).abs()


# --------------------------------------------------------------------------- scratch memory

_TLS = threading.local()


def _scratch_like(x: torch.Tensor, slot: str) -> torch.Tensor:
    """A per-thread reusable flat buffer of at least ``x.numel()`` elements (dtype of ``x``)."""
    n = x.numel()
    key = (slot, x.dtype, x.device)
    bufs = getattr(_TLS, "abs", None)
    if bufs is None:
        bufs = _TLS.abs = {}
    buf = bufs.get(key)
    if buf is None or buf.numel() < n:
        buf = bufs[key] = torch.empty(n, dtype=x.dtype, device=x.device)
    return buf


def _abs_scratch(x: torch.Tensor) -> torch.Tensor:
    """``|x|`` flattened, written into a per-thread reusable buffer (not a fresh allocation).

    Large fresh allocations are returned to the OS and page-fault again on every use, which
    costs more than the ``abs`` itself; the buffer is only used inside one call, never returned.
    """
    a = _scratch_like(x, "abs")[: x.numel()]
    torch.abs(x.reshape(-1), out=a)
    return a


# --------------------------------------------------------------------------- selection core

_FAST_MIN = 1 << 15  # groups smaller than this use the plain selection
_SAMPLE = 1 << 14  # strided sample size of the fast path
_Z = 5.0  # bracket half-width in binomial standard deviations


def _bracket(s: torch.Tensor, n: int, k: int):
    """Ranks of the sampled bracket of the k-th largest of ``n`` magnitudes: ``(lo, j_hi)``
    with ``lo`` (0-dim) below the threshold with high probability and ``j_hi`` the sample rank
    (from the top) of the upper bound, given the strided sample ``s`` of the magnitudes."""
    m = s.numel()
    p = k / n
    sd = math.sqrt(max(p * (1.0 - p), 1.0 / m) * m)
    j_lo = min(m, max(1, math.ceil(p * m + _Z * sd) + 1))  # rank (from the top) of lo
    j_hi = min(m, max(1, math.floor(p * m - _Z * sd)))  # rank of the upper bound hi
    return torch.kthvalue(s, m - j_lo + 1).values, j_hi


def _kth_of_candidates(cand: torch.Tensor, k: int, s: torch.Tensor, j_hi: int) -> torch.Tensor:
    """The k-th largest of the candidate magnitudes ``cand`` (``numel >= k``), selecting among
    those below the bracket's upper bound only where that is enough."""
    c = cand.numel()
    if c == k:
        return cand.min()
    m = s.numel()
    hi = torch.kthvalue(s, m - j_hi + 1).values
    above = cand > hi
    n_hi = int(torch.count_nonzero(above))
    r = k - n_hi  # rank of t among the candidates <= hi
    if n_hi < k:
        band = cand[~above]
        return torch.kthvalue(band, band.numel() - r + 1).values
    return torch.kthvalue(cand, c - k + 1).values  # the bracket's top was too low


def _stride(n: int) -> int:
    return max(1, n // _SAMPLE) | 1  # odd: does not alias power-of-two layouts


def _flat_topk(a: torch.Tensor, k: int):
    """Exact Top-K of the 1-D magnitude tensor ``a`` (``0 < k < n``) by a sampled bracket.

    Returns ``(idx, t)``: the int64 flat indices of the kept elements (ascending, exactly ``k``,
    stream-order tie rule) and the k-th largest magnitude ``t`` (0-dim); ``None`` when the
    bracket missed (the caller then runs the plain selection).
    """
    s = a[:: _stride(a.numel())]
    lo, j_hi = _bracket(s, a.numel(), k)
    idx = torch.nonzero(a >= lo).reshape(-1)
    if idx.numel() < k:
        return None
    cand = a.take(idx)
    t = _kth_of_candidates(cand, k, s, j_hi)
    if cand.numel() == k:
        return idx, t
    keep = cand >= t
    n_ge = int(torch.count_nonzero(keep))
    if n_ge != k:  # surplus ties at t: keep the first in stream order (idx ascending)
        gt = cand > t
        eq = keep & ~gt
        need = k - (n_ge - int(torch.count_nonzero(eq)))
        rank = torch.cumsum(eq.to(torch.int32), dim=0)
        keep = gt | (eq & (rank <= need))
    return idx[keep], t


def _flat_threshold_fused(x: torch.Tensor, k: int):
    """The k-th largest magnitude ``t`` (a float32 tensor of shape ``[1]``) of the float32
    tensor ``x`` when the kept set of the exact Top-K is exactly ``{|x| >= t}`` with ``t > 0``
    (no surplus ties; the usual case), else ``None`` (the caller selects as usual).

    Same sampled bracket ``lo`` as :func:`_flat_topk`; the candidates ``|x| >= lo`` come from
    one fused pass and their k-th largest from a radix select (:mod:`sw.fused`), which gives
    the same ``t`` as ``kthvalue``."""
    from . import fused

    n = x.numel()
    s = x.reshape(-1)[:: _stride(n)].abs()
    lo, _ = _bracket(s, n, k)
    cand = fused.candidates(x, float(lo), _scratch_like(x, "cand"))
    if cand is None or cand.numel() < k:
        return None
    r = fused.kth_largest(cand, k)
    if r is None or not r[0] > 0 or r[1] != k:
        return None
    return torch.tensor([r[0]], dtype=torch.float32)


def _flat_select(x: torch.Tensor, k: int, *, check: bool = True):
    """``(idx, t)`` of the exact whole-tensor Top-K of ``x`` (fast path), or ``None``.

    ``None`` when the fast path does not apply (small or integer tensor, ``k`` at a bound) or its
    bracket missed; the caller then uses :func:`_select_rows`.
    """
    n = x.numel()
    if not x.is_floating_point() or n < _FAST_MIN or not 0 < k < n:
        return None
    if check:
        check_finite(x)
    return _flat_topk(_abs_scratch(x), k)


def _mask_from_idx(idx: torch.Tensor, shape, device=None) -> torch.Tensor:
    m = torch.zeros(math.prod(shape), dtype=torch.bool, device=device or idx.device)
    m[idx] = True
    return m.reshape(shape)



def kth_magnitude(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest absolute value of ``x`` (0-dim tensor), by selection (``kthvalue``)."""
    n = x.numel()
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"k must be an int, got {k!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}] for a tensor of {n} elements, got {k}")
    check_finite(x)
    a = _magnitude(x).reshape(-1)
    return torch.kthvalue(a, n - k + 1).values


def _select_rows(a: torch.Tensor, k: int, ties: str = "exact"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Top-K of every row of the magnitude matrix ``a`` ``[G, n]``.

    Returns ``(mask [G, n] bool, thresholds [G])`` following the stream-order tie rule
    (``ties="keep"``: every element ``>=`` the row's threshold).
    """
    g, n = a.shape
    if k <= 0:
        none = torch.zeros_like(a, dtype=torch.bool)
        return none, torch.full((g,), math.inf, dtype=torch.float64)
    if k >= n:
        t = a.min(dim=1).values if n else torch.zeros(g, dtype=a.dtype)
        return torch.ones_like(a, dtype=torch.bool), t
    t = torch.kthvalue(a, n - k + 1, dim=1).values  # k-th largest per row
    tc = t.unsqueeze(1)
    ge = a >= tc
    if ties == "keep":
        return ge, t
    n_ge = torch.count_nonzero(ge, dim=1)
    if bool((n_ge == k).all()):  # no surplus ties anywhere: |x| >= t is exactly k elements
        return ge, t
    gt = a > tc
    eq = ge & ~gt
    need = (k - gt.sum(dim=1)).unsqueeze(1)
    rank = torch.cumsum(eq.to(torch.int32), dim=1)  # 1-based rank among ties, stream order
    return gt | (eq & (rank <= need)), t


def _groups(x: torch.Tensor, dims: str) -> int:
    if dims in ("nchw", "random"):
        return 1
    if x.ndim < 1:
        raise ValueError(f"dims={dims!r} needs at least 1 dimension, got a 0-dim tensor")
    if dims == "chw":
        return x.shape[0]
    if x.ndim < 3:
        raise ValueError(
            f"dims='hw' needs a tensor with >= 3 dimensions (N, C, spatial...), got shape "
            f"{tuple(x.shape)}"
        )
    return x.shape[0] * x.shape[1]


def topk_mask(
    x: torch.Tensor,
    density: float,
    dims: str = "nchw",
    *,
    generator: torch.Generator | None = None,
    return_threshold: bool = False,
    ties: str = "exact",
    _check: bool = True,
):
    """Boolean mask of the elements :func:`topk` keeps (same shape as ``x``).

    With ``return_threshold=True`` also returns the per-group thresholds (shape ``[G]``; for
    ``"random"`` the threshold is that of the random scores and not meaningful). ``ties="keep"``
    keeps every element at least as large as the threshold (see the module docstring).
    """
    d = check_density(density)
    check_dims(dims)
    check_ties(ties)
    if _check:
        check_finite(x)
    g = _groups(x, dims)
    n = x.numel() // g if g else 0
    k = kept_count(n, d)
    fast = _flat_select(x, k, check=False) if dims == "nchw" else None
    if fast is not None:
        idx, t = fast
        if ties == "keep":
            mask = _magnitude(x).reshape(-1) >= t
        else:
            mask = _mask_from_idx(idx, (x.numel(),), x.device)
        t = t.reshape(1)
    elif dims == "random":
        scores = torch.rand(x.shape, generator=generator, dtype=torch.float32).reshape(1, -1)
        mask, t = _select_rows(scores, k)
    else:
        mask, t = _select_rows(_magnitude(x).reshape(g, n), k, ties)
    mask = mask.reshape(x.shape)
    return (mask, t) if return_threshold else mask


def topk(
    x: torch.Tensor,
    density: float,
    dims: str = "nchw",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep the ``ceil(density * n)`` largest-magnitude elements of each group, zero the rest."""
    mask = topk_mask(x, density, dims, generator=generator)
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


# --------------------------------------------------------------------------- structured


def _slice_l1(w: torch.Tensor, lead: int) -> torch.Tensor:
    """L1 norms over all but the first ``lead`` dims of ``w`` (``|w|`` for a 2-D weight)."""
    if w.ndim < 2:
        raise ValueError(
            f"structured Top-K needs a weight of >= 2 dimensions, got {tuple(w.shape)}"
        )
    a = _magnitude(w)
    if w.ndim == 2:
        return a
    return a.reshape(*w.shape[:lead], -1).sum(dim=lead)


def channel_l1(w: torch.Tensor) -> torch.Tensor:
    """L1 norms of the ``[R, S]`` kernel slices of ``w`` ``[F, C, R, S]`` -> ``[F, C]``.

    A 2-D weight ``[F, C]`` (linear layer) has 1x1 slices: the norms are ``|w|``.
    """
    return _slice_l1(w, 2)


def filter_l1(w: torch.Tensor) -> torch.Tensor:
    """L1 norms of the filters ``w[f]`` of ``w`` ``[F, C, R, S]`` -> ``[F]``.

    A 2-D weight (linear layer) has no filters to drop whole: its "norms" are ``|w|`` (the
    authors' code sparsifies linear layers element-wise in structured runs too).
    """
    return _slice_l1(w, 1)


def structure_l1(w: torch.Tensor, structure: str) -> torch.Tensor:
    """The norms a structured selection ranks: :func:`channel_l1` or :func:`filter_l1`."""
    return filter_l1(w) if structure == "filter" else channel_l1(w)


def expand_structure(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A mask over :func:`structure_l1` norms broadcast to the shape of ``w``."""
    if m.shape == w.shape:
        return m
    return m.reshape(*m.shape, *([1] * (w.ndim - m.ndim))).expand(w.shape)


def _structured_mask(w, density, structure, return_threshold, ties, _check):
    d = check_density(density)
    check_ties(ties)
    if _check:
        check_finite(w, "weight")
    norms = structure_l1(w, structure)
    k = kept_count(norms.numel(), d)
    m, t = _select_rows(norms.reshape(1, -1), k, ties)
    m = expand_structure(m.reshape(norms.shape), w)
    return (m, t) if return_threshold else m


def topk_channels_mask(
    w: torch.Tensor, density: float, *, return_threshold: bool = False, ties: str = "exact",
    _check: bool = True,
):
    """Mask (shape of ``w``) of the kept ``(f, c)`` slices, see :func:`topk_channels`."""
    return _structured_mask(w, density, "channel", return_threshold, ties, _check)


def topk_filters_mask(
    w: torch.Tensor, density: float, *, return_threshold: bool = False, ties: str = "exact",
    _check: bool = True,
):
    """Mask (shape of ``w``) of the kept filters, see :func:`topk_filters`."""
    return _structured_mask(w, density, "filter", return_threshold, ties, _check)


def topk_filters(w: torch.Tensor, density: float, *, ties: str = "exact") -> torch.Tensor:
    """Whole-filter structured Top-K (the authors' ``drop_structured_filter``).

    Keeps the ``ceil(density * F)`` filters ``w[f]`` of ``w`` ``[F, C, R, S]`` with the largest
    L1 norm (ties in filter order; ``ties="keep"``: every filter whose norm is ``>=`` the k-th
    largest, as theirs), zeroes the others. A 2-D weight is selected element-wise.
    """
    m = topk_filters_mask(w, density, ties=ties)
    return torch.where(m, w, torch.zeros((), dtype=w.dtype, device=w.device))


def topk_channels(w: torch.Tensor, density: float) -> torch.Tensor:
    """Structured Top-K (paper §3.3.1, Appendix A.1).

    One threshold for the layer over the L1 norms of the ``[R, S]`` slices of ``w``
    ``[F, C, R, S]``: keeps the ``ceil(density * F * C)`` slices ``(f, c)`` with the largest L1
    norm (ties in row-major ``(f, c)`` order), zeroes the others. Different filters may keep
    different channels.
    """
    m = topk_channels_mask(w, density)
    return torch.where(m, w, torch.zeros((), dtype=w.dtype, device=w.device))


# --------------------------------------------------------------------------- periodic Top-K


class ThresholdHolder:
    """Top-K with a threshold recomputed every ``period`` calls (Appendix A.6).

    ``mask(x, density)`` on call ``i`` (counting from 0): if ``i % period == 0`` (or nothing is
    held yet, or the group layout changed, e.g. a smaller last batch with per-sample groups) the
    exact Top-K mask is computed and its per-group threshold ``t`` (the k-th largest magnitude)
    is stored; otherwise the mask is ``|x| >= t`` with the held ``t`` (ties at ``t`` all kept;
    zeros are not kept when ``t == 0``). ``structured=True`` (or ``"channel"``) selects on the
    ``[R, S]`` slice L1 norms, ``structured="filter"`` on whole-filter L1 norms (weights only);
    ``ties="keep"`` makes recompute calls keep every element ``>=`` the threshold.
    ``advance=False`` peeks without counting a call (used in eval mode).
    """

    def __init__(self, period: int = 1, dims: str = "nchw", structured=False,
                 ties: str = "exact"):
        if not isinstance(period, int) or isinstance(period, bool) or period < 1:
            raise ValueError(f"period must be an int >= 1, got {period!r}")
        self.period = period
        self.dims = check_dims(dims)
        self.structure = check_structure(structured)
        self.structured = self.structure is not None
        self.ties = check_ties(ties)
        self.calls = 0
        self.threshold: torch.Tensor | None = None
        self._groups: int | None = None
        self.recomputed = False  # whether the last call recomputed the threshold

    def reset(self) -> None:
        self.calls = 0
        self.threshold = None
        self._groups = None

    def mask(
        self,
        x: torch.Tensor,
        density: float,
        *,
        advance: bool = True,
        generator: torch.Generator | None = None,
        check: bool = True,
    ) -> torch.Tensor:
        m, idx = self.select(x, density, advance=advance, generator=generator, check=check)
        if m is None:
            m = _mask_from_idx(idx, tuple(x.shape), x.device)
        return m

    def select(
        self,
        x: torch.Tensor,
        density: float,
        *,
        advance: bool = True,
        generator: torch.Generator | None = None,
        check: bool = True,
        lazy: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The kept set of :meth:`mask` as ``(mask, idx)``; at least one is not ``None``.

        ``mask`` is the bool mask (shape of ``x``), ``idx`` the ascending int64 flat indices of
        the kept elements; whichever the selection produced anyway is returned (the fast exact
        path yields indices, the held path a mask), so callers convert only if they need to.
        ``lazy=True``: a held whole-tensor threshold on float32 data comes back as
        ``(Held(t), None)`` (kept: ``|x| >= t, x != 0``) for the fused kernels to apply.
        """
        if self.structured:
            groups = 1
        else:
            groups = _groups(x, self.dims)
        due = (
            self.threshold is None
            or self.calls % self.period == 0
            or groups != self._groups
            or self.dims == "random"  # a random subset has no magnitude threshold to hold
        )
        if advance:
            self.calls += 1
        self.recomputed = due
        if due:
            if (lazy and not self.structured and self.dims == "nchw" and x.dtype == torch.float32
                    and x.numel() >= _FAST_MIN):
                k = kept_count(x.numel(), density)
                if 0 < k < x.numel():
                    if check:
                        check_finite(x)
                    t = _flat_threshold_fused(x, k)
                    if t is not None:  # kept: exactly {|x| >= t} (also what ties="keep" keeps)
                        self.threshold = t
                        self._groups = groups
                        return Held(float(t)), None
            if not self.structured and self.dims == "nchw" and self.ties == "exact":
                fast = _flat_select(x, kept_count(x.numel(), density), check=check)
                if fast is not None:
                    idx, t = fast
                    self.threshold = t.detach().reshape(1).clone()
                    self._groups = groups
                    return None, idx
            if self.structured:
                m, t = _structured_mask(x, density, self.structure, True, self.ties, check)
            else:
                m, t = topk_mask(
                    x, density, self.dims, generator=generator, return_threshold=True,
                    ties=self.ties, _check=check,
                )  # fmt: skip
            self.threshold = t.detach().clone()
            self._groups = groups
            return m, None
        if check:
            check_finite(x)
        if lazy and groups == 1 and not self.structured and x.dtype == torch.float32:
            return Held(float(self.threshold.reshape(()))), None
        return self._held(x, groups), None

    def held_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """The mask of the held threshold applied to ``x`` (no call counted, nothing
        recomputed); ``None`` when nothing is held or it does not fit ``x``'s groups."""
        groups = 1 if self.structured else _groups(x, self.dims)
        if self.threshold is None or self.dims == "random" or groups != self._groups:
            return None
        return self._held(x, groups)

    def _held(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        t = self.threshold
        if self.structured:
            norms = structure_l1(x, self.structure)
            return expand_structure((norms >= t) & (norms > 0), x)
        if groups == 1 and x.is_floating_point():
            a = _abs_scratch(x)
            tt = t.to(a.dtype).reshape(())
            # t > 0 implies |x| > 0; only a zero threshold needs the explicit zero exclusion
            m = a >= tt if bool(tt > 0) else a > 0
            return m.reshape(x.shape)
        a = _magnitude(x).reshape(groups, -1)
        if not a.is_floating_point():
            a = a.double()
        t = t.to(a.dtype).reshape(groups, 1)
        return ((a >= t) & (a > 0)).reshape(x.shape)

    def state_dict(self) -> dict:
        return {"period": self.period, "calls": self.calls, "threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        self.period = int(state["period"])
        self.calls = int(state["calls"])
        self.threshold = state["threshold"]
        self._groups = None if self.threshold is None else int(self.threshold.numel())
