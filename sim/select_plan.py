"""How the threshold-select unit makes each S blob of a lowered GEMM (host bookkeeping only).

A SWAT layer's ``S`` operands are the Top-K of a quantized tensor (``sw.lowering``): ``Wsᵀ``
(forward) and ``Ws`` (input gradient) of the weights ``qw [F, K]``, ``As`` (weight gradient) of
the activations ``qa`` (im2col'd for a convolution). ``sw.int_topk`` selects in the *reference
order* of the tensor (row-major): keep ``|x| > t`` and the first ``ties`` elements with ``|x| ==
t``. On the RTL the unit makes that selection in two steps:

1. **THRESHOLD** (pass 1) on the tensor streamed in any order gives the pair ``(t, ties)``
   (:func:`threshold_view` is the ``[K, N]`` view streamed);
2. **GIVEN** (pass 2) on the stream of each S block the host tiling cuts (``hw.contract.tiling
   .plan``; a GEMM whose blob does not fit one S buffer is several core operations), with the
   tie rule expressed in that block's coordinates (:func:`block_command`):

   * ``forward`` (``S = Wsᵀ``, stream = reference order restricted to the block): the block's
     tie budget = the kept ties inside it (they are a prefix of the block's stream);
   * ``backward_input`` and a linear layer's ``backward_weight`` (``S`` = the tensor itself,
     its stream is the transpose of the reference order): ``transpose = 1`` with the cut (the
     position of the last kept tie in reference order) moved into the block's coordinates;
   * a convolution's ``backward_weight`` (``S`` = im2col of the tensor: elements repeated, in
     im2col order): exact when the tie split is trivial (no tie kept, or all: ``GIVEN (t, 0)``
     keeps ``|x| > t``, ``GIVEN (t, all)`` keeps ``|x| >= t``, both order-free); otherwise the
     unit needs the tensor position of each im2col element: with the source-index side band
     (the core's unit has one) ``by_index`` keeps a tie iff its index is at most the cut's
     position (``indexed=True``, which serves the two kinds above as well); without it the
     host writes the blob (:attr:`BlockCommand.host`; the unit still streams the block with
     ``GIVEN (t, 0)`` so its cycles are counted);
   * an ``S`` with no Top-K (density 1, SAW's forward weights): ``GIVEN (0, all)`` keeps every
     non-zero.

The cut comes from the RTL when the unit has the side band (THRESHOLD ``by_index``: a second,
write-free pass over the tensor holds the position of the last kept tie; the host's
``sw.int_topk.last_kept_tie_index`` only checks it); on a unit without it, the cut (or a
block's budget) is derived from the pair the RTL reported and the positions of the ties in the
tensor: a count, not a selection. The blob the unit writes must equal
``hw.contract.blob.encode_words`` of the host's ``S`` block word for word
(``sim.select_loop`` checks it).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hw.contract.codes import SelectMode
from hw.contract.cycles import select_cycles
from sw import int_topk

from .select_ops import KEEP_ALL_TIES

__all__ = ["Selection", "BlockCommand", "selection_of", "threshold_view", "tie_cut",
           "block_command", "positions", "supported"]

_U16 = 0xFFFF
#: why the RTL unit cannot make a GEMM's S (:func:`supported`, ``sim.select_sampled``)
NOT_PER_TENSOR = "not a per-tensor Top-K of the quantized tensor (groups or a structured mask)"
PAD = 0xFFFF_FFFF  # index of a padding element (``sw.lowering.PAD_INDEX``): never a tie


@dataclasses.dataclass(eq=False)
class Selection:
    """The Top-K a GEMM's ``S`` comes from.

    ``key`` names the tensor (``"<layer>:W"``, ``"<layer>:A"``; the forward and input-gradient
    blobs share the weights' pass 1), ``src`` the quantized tensor (reference order =
    ``src.ravel()``), ``k`` the kept count, ``kind`` one of ``"all"`` (no Top-K), ``"forward"``,
    ``"transposed"``, ``"im2col"``; ``pos`` (``[K, N]`` of ``S``, int64) the reference position
    of every element of ``S`` (-1: padding), for ``im2col`` only.
    """

    key: str
    kind: str
    src: np.ndarray | None = None
    k: int = 0
    pos: np.ndarray | None = None


@dataclasses.dataclass
class BlockCommand:
    """The GIVEN command for one S block: ``given = (t, ties, cut_row, cut_col, cut_any,
    cut_index)``, ``transpose``, ``by_index`` with ``index`` (the block's source indices for
    the unit's side band); ``host`` names why the host writes this block's blob (else
    ``None``)."""

    given: tuple
    transpose: bool = False
    host: str | None = None
    by_index: bool = False
    index: np.ndarray | None = None


def selection_of(job) -> Selection:
    """The :class:`Selection` of ``job`` (a ``sw.lowering.GemmJob``)."""
    if np.array_equal(job.s, job.s_dense):
        return Selection(f"{job.layer}:{job.pass_name}", "all")
    if job.pass_name in ("forward", "backward_input"):
        qw = job.s_dense.T if job.pass_name == "forward" else job.s_dense
        src = np.ascontiguousarray(qw)
        kind = "forward" if job.pass_name == "forward" else "transposed"
        return Selection(f"{job.layer}:W", kind, src,
                         int_topk.k_from_density(job.density, src.size))
    src = getattr(job, "select_src", None)
    if job.kind == "linear" or src is None:
        src = np.ascontiguousarray(job.s_dense)
        return Selection(f"{job.layer}:A", "transposed", src,
                         int_topk.k_from_density(job.density, src.size))
    from sw.lowering import PAD_INDEX, im2col_source_index

    src = np.ascontiguousarray(src)
    pos = im2col_source_index(src.shape, job.select_module)
    pos[pos == PAD_INDEX] = -1
    return Selection(f"{job.layer}:A", "im2col", src,
                     int_topk.k_from_density(job.density, src.size), pos)


def supported(job, sel: Selection) -> str | None:
    """``None`` when the blob of ``job`` is the per-tensor Top-K the unit makes, else why not
    (e.g. a per-group or structured selection); a host-side check on the reference alone."""
    if sel.kind == "all":
        return None
    keep = int_topk.select_mask(sel.src, sel.k)
    ref = np.where(keep, sel.src, 0).astype(np.int8)
    if sel.kind == "forward":
        want = ref.T
    elif sel.kind == "transposed":
        want = ref.reshape(job.s.shape)
    else:
        flat = np.concatenate([ref.ravel(), np.zeros(1, np.int8)])
        want = flat[sel.pos]  # position -1 -> the appended zero (padding)
    if want.shape != job.s.shape or not np.array_equal(want, job.s):
        return NOT_PER_TENSOR
    return None


def threshold_view(src: np.ndarray) -> np.ndarray:
    """A ``[K, N]`` view of ``src`` whose column-by-column stream is ``src.ravel()`` (the
    reference order), with ``K, N <= 65535`` (the command's 16-bit fields)."""
    n = src.size
    flat = np.ascontiguousarray(src).ravel()
    cols = src.shape[0] if src.ndim > 1 else 1
    if n // cols > _U16 or cols > _U16:
        cols = next((c for c in range(-(-n // _U16), _U16 + 1) if n % c == 0), None)
        if cols is None:
            raise ValueError(f"a tensor of {n} elements has no K x N view with K, N <= 65535")
    return flat.reshape(cols, n // cols).T


def tie_cut(src: np.ndarray, t: int, ties: int):
    """Reference position of the last kept tie: ``None`` when no tie is kept, ``-1`` when
    every tie is (a trivial split), else the position."""
    mag = np.abs(np.asarray(src, dtype=np.int16).ravel())
    where = np.flatnonzero(mag == t)
    if ties <= 0 or where.size == 0:
        return None
    if ties >= where.size:
        return -1
    return int(where[ties - 1])


def positions(sel: Selection, s: np.ndarray, kb: slice, nb: slice) -> np.ndarray:
    """Reference position of every element of the block ``s[kb, nb]`` (-1: padding)."""
    if sel.kind not in ("forward", "transposed"):
        return sel.pos[kb, nb]
    rr, cc = np.meshgrid(np.arange(kb.start, kb.stop), np.arange(nb.start, nb.stop),
                         indexing="ij")
    if sel.kind == "forward":
        return cc * s.shape[0] + rr
    return rr * s.shape[1] + cc


def block_command(sel: Selection, s: np.ndarray, kb: slice, nb: slice, t: int,
                  ties: int, cut, *, indexed: bool = False, pos=None) -> BlockCommand:
    """The GIVEN command that makes the blob of ``s[kb, nb]`` (module docstring); ``cut`` from
    :func:`tie_cut`. ``indexed`` (a unit with the source-index side band): a split tie class
    is kept by position, ``by_index`` with the block's reference positions (``pos`` when the
    caller has them, else :func:`positions`) as indices and the cut as ``cut_index``, exact
    for every kind of blob."""
    if sel.kind == "all":
        return BlockCommand((0, KEEP_ALL_TIES, 0, 0, 0, 0))
    if cut is None:
        return BlockCommand((t, 0, 0, 0, 0, 0))
    if cut == -1:
        return BlockCommand((t, KEEP_ALL_TIES, 0, 0, 0, 0))
    if indexed:
        pos = positions(sel, s, kb, nb) if pos is None else pos
        return BlockCommand((t, ties, 0, 0, 1, cut), by_index=True,
                            index=np.where(pos < 0, PAD, pos).astype(np.uint32))
    if sel.kind == "forward":  # reference order = the stream of S: count the block's ties
        pos = positions(sel, s, kb, nb)
        blk = np.abs(s_dense_of(sel)[kb, nb].astype(np.int16))
        return BlockCommand((t, int(((blk == t) & (pos <= cut)).sum()), 0, 0, 0, 0))
    if sel.kind == "transposed":  # S row-major is the reference order: cut in block coords
        pr, pc = divmod(cut, s.shape[1])
        a, b = pr - kb.start, pc - nb.start
        rb, cb = kb.stop - kb.start, nb.stop - nb.start
        if a < 0 or (a == 0 and b < 0):
            return BlockCommand((t, 0, 0, 0, 0, 0), transpose=True)
        if a >= rb:
            return BlockCommand((t, 0, _U16, min(a, _U16), 1, 0), transpose=True)
        if b < 0:
            return BlockCommand((t, 0, _U16, a - 1, 1, 0), transpose=True)
        return BlockCommand((t, 0, min(b, cb - 1, _U16), a, 1, 0), transpose=True)
    return BlockCommand((t, 0, 0, 0, 0, 0),
                        host="a split tie class in the im2col stream (the unit cannot tell an "
                             "element's tensor position; timed in RTL, blob from the host)")


def s_dense_of(sel: Selection) -> np.ndarray:
    """``S`` without Top-K in the forward layout (``src.T``)."""
    return sel.src.T


def threshold_cycles(src_view: np.ndarray, lanes: int, by_index: bool = False) -> int:
    """Model cycles of a THRESHOLD on ``src_view`` (for scheduling estimates only) by a unit
    of ``lanes`` lanes (the core's ``sel_lanes``); ``by_index``: with the cut pass."""
    return select_cycles(src_view.shape[0], src_view.shape[1], lanes,
                         mode=SelectMode.THRESHOLD, by_index=by_index)


def given_cycles(rows: int, cols: int, nnz: int, lanes: int, banks: int = 1) -> int:
    """Model cycles of a GIVEN on a ``rows x cols`` block (scheduling estimates only) by a
    unit of ``lanes`` lanes (the core's ``sel_lanes``); ``banks``: S words the unit writes a
    cycle (the core's ``sel_banks``)."""
    return select_cycles(rows, cols, lanes, mode=SelectMode.GIVEN, nnz=nnz, banks=banks)
