"""Cycle formulas of the core and of the threshold-select unit.

Two lower bounds of a GEMM's cycles are in use, and they differ; they have different names:

* :func:`ideal_cycles` -- the **dataflow bound** ``ceil(M/rows) · nnz(S) / cols``: every PE
  column busy with one effectual entry each cycle, M padded to whole M-tiles. This is what the
  core could reach without any overhead; it is the "ideal cycles" of the reports.
* :func:`mac_bound_cycles` -- the **MAC bound** ``M · nnz(S) / (rows · cols)``: effectual
  multiply-accumulates over PEs. Utilization (``macs / (PEs · cycles)``) is measured against
  it; it equals the dataflow bound when ``rows`` divides ``M``.

:func:`schedule_cycles` is an event model of the core's dynamic schedule (an estimate, close to
the RTL's ``cycles``); :func:`select_cycles` the threshold-select unit's exact cycle count
(checked against its RTL by the tests).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .blob import as_numpy
from .codes import BINS, SelectMode

__all__ = ["ideal_cycles", "mac_bound_cycles", "schedule_cycles", "schedule_cycles_many",
           "HANDOUT", "START_LATENCY", "FIT_SLACK", "select_cycles",
           "exposed_select_cycles", "chunk_tiles", "MAX_REPS", "SELECT_LANES", "SELECT_BANKS"]

#: Threshold-select unit of the simulated core (``sim.verilate.harness_model``): elements
#: streamed per cycle, and the S sub-banks it writes per cycle (``SwatCore(sel_max_banks=8)``
#: keeps the loader's 8:1 read select). The host's select-cycle formulas (``sw.lowering``) use
#: the same unit, so ``intref`` and ``rtl`` count the same select.
SELECT_LANES = 32
SELECT_BANKS = 8

#: most M-tiles one work-item descriptor of the core covers (a power of two)
MAX_REPS = 16


def chunk_tiles(nnz: int, n: int, cols: int) -> int:
    """M-tiles per work item (chunk) of the core's dispatcher: the smallest power of two
    ``g <= MAX_REPS`` with ``g * nnz >= 2 * cols * n``, so that a chunk is about ``2 * cols``
    entries or longer and one descriptor per cycle outpaces ``cols`` PE columns however short
    the columns of ``S`` are (``hw.dispatcher`` does the same in gateware)."""
    g = 1
    while g < MAX_REPS and g * nnz < 2 * cols * n:
        g *= 2
    return g


def ideal_cycles(m: int, nnz: int, rows: int, cols: int) -> float:
    """Dataflow bound: one PE-column cycle per (M-tile, non-zero) pair, over ``cols`` columns."""
    return -(-int(m) // int(rows)) * nnz / cols


def mac_bound_cycles(macs: int, pes: int) -> float:
    """MAC bound: effectual multiply-accumulates over processing elements."""
    return macs / pes


#: The loader's two hand-outs (``hw.loader.Loader(slots=...)``) as ``(a, b, c)`` of the event
#: model of :func:`schedule_cycles`: a PE column whose current item issues from cycle ``t`` to
#: ``t1 - 1`` may be handed its next item from cycle ``max(t + a, t1 - b)`` on, and an item
#: handed out in cycle ``G`` issues from ``max(t1, G + c)`` on.
#:
#: * ``False``, the chain: the column takes the FIFO head in its last issue cycle ``t1 - 1``
#:   and issues it in the next.
#: * ``True``, the next-item slots: the column's ``want`` register rises when its item has
#:   ``WANT_AHEAD = 5`` issue cycles left (this cycle's included), the loader registers it
#:   again and decides in ``G``; its ``fill_q`` / ``item_q`` registers write the column's slot
#:   at the end of ``G + 1``, and the column moves the slot into its item registers when its
#:   current item ends, in ``G + 2`` at the earliest, so the item issues from ``G + 3`` on.
#:   An item shorter than ``WANT_AHEAD`` cycles raises ``want`` as it is taken, in ``t - 1``:
#:   ``G >= t + 1``, so an item shorter than ``WANT_AHEAD - 1`` cycles leaves its column idle
#:   for the rest.
HANDOUT = {False: (0, 1, 1), True: (1, 3, 3)}

#: ``start`` → first entry read of :func:`schedule_cycles` (M of at most 32 M-tiles), per
#: hand-out: the slots' first item goes through two registers more (``item_q``, the slot), and
#: their dispatcher hands a descriptor out in the cycle it is formed when its FIFO is empty (one
#: cycle less), but its checks read the S word from a second register (``hw.dispatcher``'s
#: stage B2: one cycle more for the header, one for the first pointer)
START_LATENCY = {False: 13, True: 16}

#: the cycles of ``START_LATENCY`` the loader's fit check (``mtiles // 8 + mtiles % 8`` cycles)
#: runs in before it delays the first entry read, per hand-out (the slots' dispatcher reads one
#: header word more, so the fit check has one cycle more)
FIT_SLACK = {False: 4, True: 5}


def _first_read(mtiles: int, start_latency: int | None, slots: bool) -> int:
    """``start`` → first entry read of one operation of ``mtiles`` M-tiles: ``start_latency``
    (default :data:`START_LATENCY`) plus the fit check's delay beyond :data:`FIT_SLACK`."""
    if start_latency is None:
        start_latency = START_LATENCY[bool(slots)]
    return start_latency + max(0, mtiles // 8 + mtiles % 8 - FIT_SLACK[bool(slots)])


def schedule_cycles(s, m: int, rows: int = 8, cols: int = 8, *, start_latency: int | None = None,
                    drain_latency: int = 11, result_logs: bool = True,
                    slots: bool = True) -> int:
    """Estimated ``cycles`` of one ``SwatCore`` operation on ``S`` (dense ``[K, N]`` array):
    equal to the RTL's with the result logs.

    Work items are chunks: column ``n`` of ``S`` over ``g = chunk_tiles(nnz, N, cols)``
    consecutive M-tiles (fewer in the last tile group), in the order (group 0: ``n = 0 …
    N-1``), (group 1: …); an item takes ``reps · max(nnz(S[:, n]), 1)`` cycles (an empty column
    sends one zero token per M-tile). The dispatcher hands out at most one item per cycle; in a
    cycle in which it does, the item goes to the lowest-indexed PE column that may take one then
    (:data:`HANDOUT`, ``slots``: the loader's next-item slots, or the chain of the iCE40).
    Constants: ``start_latency`` (``start`` → first entry read, default :data:`START_LATENCY`; the
    fit check adds ``mtiles // 8 + mtiles % 8 -`` :data:`FIT_SLACK` cycles when that is positive)
    and ``drain_latency`` (last entry read → ``done``). ``result_logs=False`` models the single C
    write port too (one result per cycle, in order of completion; exact only while no result waits
    for a write).
    """
    s = as_numpy(s)
    return _schedule((s != 0).sum(axis=0), m, rows, cols, start_latency, drain_latency,
                     result_logs, slots)


def _schedule(col_nnz, m, rows, cols, start_latency=None, drain_latency=11, result_logs=True,
              slots=True) -> int:
    """:func:`schedule_cycles` from the non-zeros per column of ``S``."""
    a, b, c = HANDOUT[bool(slots)]
    n = len(col_nnz)
    lens = np.maximum(col_nnz, 1).astype(int).tolist()
    mtiles = -(-m // rows)
    g = chunk_tiles(int(col_nnz.sum()), n, cols)
    start = _first_read(mtiles, start_latency, slots)
    free = [start] * cols  # when each PE column's current item ends (its next may issue)
    may = [start - c] * cols  # from when each PE column may be handed its next item
    ends = []  # (finish time of each M-tile's pass)
    hand = start - c - 1  # the cycle of the last hand-out
    last = start
    for t0 in range(0, mtiles, g):
        reps = min(g, mtiles - t0)
        for n_len in lens:
            hand = max(hand + 1, min(may))
            j = next(i for i in range(cols) if may[i] <= hand)  # lowest index first
            t = max(free[j], hand + c)
            if not result_logs:  # only the single-port model needs every tile's finish
                ends.extend(t + (r + 1) * n_len for r in range(reps))
            t1 = t + reps * n_len
            if t1 > last:
                last = t1
            free[j] = t1
            may[j] = max(t + a, t1 - b)
    if result_logs:
        return int(last + drain_latency)
    port = 0
    for e in sorted(ends):
        port = max(port, e) + 1
    return int(max(port - 1, last) + drain_latency)


def schedule_cycles_many(col_nnz, ms, rows: int = 8, cols: int = 8, *,
                         start_latency: int | None = None, drain_latency: int = 11,
                         slots: bool = True) -> np.ndarray:
    """:func:`schedule_cycles` (result logs) of many core operations at once, equal to it
    operation by operation: ``col_nnz[i]`` the non-zeros per column of operation ``i``'s ``S``,
    ``ms[i]`` its M rows.

    Operations with about the same number of work items are scheduled side by side, one numpy
    step per item position (shorter ones masked): a sampled ResNet-50 GEMM has thousands of
    operations, and one Python event loop each took a minute per step lowered."""
    a, b, c = HANDOUT[bool(slots)]
    ms = [int(m) for m in ms]
    out = np.zeros(len(ms), dtype=np.int64)
    lens_of, starts = [], np.zeros(len(ms), dtype=np.int64)
    for i, (nz, m) in enumerate(zip(col_nnz, ms, strict=True)):
        nz = np.asarray(nz, dtype=np.int64)
        mtiles = -(-m // rows)
        g = chunk_tiles(int(nz.sum()), len(nz), cols)
        reps = np.minimum(g, mtiles - np.arange(0, mtiles, g))
        lens_of.append((reps[:, None] * np.maximum(nz, 1)[None, :]).ravel())
        starts[i] = _first_read(mtiles, start_latency, slots)
    counts = np.array([len(v) for v in lens_of], dtype=np.int64)
    order = np.argsort(counts, kind="stable")
    lo = 0
    while lo < len(order):
        hi = lo + 1  # a bucket: counts within 25 % of its largest
        while hi < len(order) and counts[order[hi]] * 4 <= counts[order[lo]] * 5 + 4:
            hi += 1
        idx = order[lo:hi]
        lo = hi
        if len(idx) < 16:  # too few to gain from numpy steps: the event loop, one by one
            for i in idx:
                out[i] = _schedule(np.asarray(col_nnz[i]), ms[i], rows, cols, start_latency,
                                   drain_latency, True, slots)
            continue
        width = int(counts[idx].max())
        last = starts[idx].copy()
        if width:
            lens = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                lens[r, :counts[i]] = lens_of[i]
            valid = np.arange(width)[None, :] < counts[idx][:, None]
            free = np.repeat(last[:, None], cols, axis=1)
            may = free - c
            hand = last - c - 1
            ar = np.arange(len(idx))
            for k in range(width):
                v = valid[:, k]
                h = np.maximum(hand + 1, may.min(axis=1))
                j = (may <= h[:, None]).argmax(axis=1)  # lowest index that may take one
                t = np.maximum(free[ar, j], h + c)
                t1 = t + lens[:, k]
                free[ar, j] = np.where(v, t1, free[ar, j])
                may[ar, j] = np.where(v, np.maximum(t + a, t1 - b), may[ar, j])
                hand = np.where(v, h, hand)
                last = np.where(v, np.maximum(last, t1), last)
        out[idx] = last + drain_latency
    return out


def select_cycles(rows, cols, lanes, *, mode=SelectMode.FULL, nnz=None, banks=1, kept=None,
                  fifo_depth=16, by_index=False) -> int:
    """Threshold-select cycles from the command to ``done`` with an always-valid input and an
    always-ready output.

    With ``beats = ceil(rows * cols / lanes)``:

    * setup: ``3 + bit_length(rows)`` cycles (``n = rows * cols`` by shift-and-add, checks);
    * pass 1: ``beats`` (one beat a cycle), 2 to drain the histogram pipeline, the scan
      (``BINS`` bins + 2 cycles of read and sum latency), 2 to hand the result over to pass 2
      (1 for THRESHOLD, which ends there);
    * pass 2: one beat a cycle while the record FIFO has room; the blob writer needs, per beat
      with writes, ``ceil(entries / banks) + ceil(column ends / banks)`` cycles; then the header
      in ``ceil(4 / banks)`` cycles.

    THRESHOLD with ``by_index`` adds its cut pass: ``beats`` more (no writes, no header).

    Pass 2 is exact when ``kept`` is given: the ``[rows, cols]`` matrix of the blob (its
    non-zeros are the entries the pass writes, e.g. the sparse ``S`` of the selection), whose
    per-beat work is run through a cycle model of the keep logic, the record FIFO
    (``fifo_depth``) and the writer (``_pass2_cycles``; equal to the RTL in
    ``tests/test_threshold_select.py`` for every lane, bank and FIFO count tried). Without it,
    pass 2 is estimated as ``max(beats, writes) + 4 + ceil(4 / banks)`` from ``nnz`` (default
    ``rows * cols``, the worst case), with the column-end cycles exact and, for ``banks > 1``,
    the entries of a beat taken as binomial with the density ``nnz / n``; for one bank that is
    ``nnz + cols`` writes and lands within 4 cycles of the RTL. Measured (lanes 8, ``S`` 576 x
    64), FULL / HELD: density 0.1 9372 / 4629 with ``banks = 1``, 9369 / 4626 with ``banks =
    8``; density 0.3 15888 / 11145 with ``banks = 1``, 9369 / 4626 with ``banks = 8``.
    """
    n = rows * cols
    beats = -(-n // lanes)
    pass1 = beats + 2 + BINS + 2 + 2
    mode = SelectMode(int(getattr(mode, "value", mode)))
    total = 3 + int(rows).bit_length()  # command, n = rows * cols by shift-and-add, checks
    if mode in (SelectMode.FULL, SelectMode.THRESHOLD):
        total += pass1
    if mode == SelectMode.THRESHOLD and by_index:
        return total + beats  # the cut pass: one beat a cycle, nothing written
    if mode == SelectMode.THRESHOLD:
        return total - 1  # it ends with the scan's result, without the hand-over to pass 2
    ends = _beat_ends(rows, cols, lanes)
    end_cycles = -(-ends // banks)
    if kept is not None:
        kept = as_numpy(kept)
        if kept.shape != (rows, cols):
            raise ValueError(f"kept has shape {kept.shape}, not ({rows}, {cols})")
        flat = np.zeros(beats * lanes, dtype=np.int64)
        flat[:n] = kept.T.ravel() != 0
        entries = flat.reshape(beats, lanes).sum(axis=1)
        return total + _pass2_cycles(-(-entries // banks) + end_cycles, banks, fifo_depth)
    if nnz is None:
        nnz = n
    density = nnz / n if n else 0.0
    entry_cycles_per_beat = sum(
        math.comb(lanes, e) * density ** e * (1 - density) ** (lanes - e) * -(-e // banks)
        for e in range(lanes + 1))
    entry_cycles = nnz if banks == 1 else round(beats * entry_cycles_per_beat)
    writes = entry_cycles + int(end_cycles.sum())
    return total + max(beats, writes) + 4 + -(-4 // banks)


def _beat_ends(rows, cols, lanes):
    """Column ends (elements ``c * rows + rows - 1``) in every beat of a pass (counted per
    column, not per element: an im2col'd ResNet-50 activation is ~10⁸ elements)."""
    beats = -(-(rows * cols) // lanes)
    ends = (np.arange(cols, dtype=np.int64) * rows + rows - 1) // lanes
    return np.bincount(ends, minlength=beats).astype(np.int64)


def _pass2_cycles(work, banks, fifo_depth):
    """Cycles of pass 2 from its first cycle to ``done``: beat ``b`` (one a cycle) leaves a
    record of ``work[b]`` writer cycles (none when 0) in the record FIFO (Amaranth's
    ``SyncFIFOBuffered``: ``fifo_depth - 1`` entries and an output register, 2 cycles from
    write to read) while it has room; the writer takes the next record in the cycle its last
    write leaves; the header follows once everything is written."""
    inner = deque()
    out_reg = None  # the record in the FIFO's output register
    left = 0  # writer cycles of the current record not done
    beat, t, beats = 0, 0, len(work)
    header_left = -(-4 // banks)
    while True:
        if beat == beats and left == 0 and not inner and out_reg is None:
            header_left -= 1  # the header: the writer is idle, the FIFO empty
            if header_left == 0:
                return t + 1
            t += 1
            continue
        left = max(0, left - 1)
        accept = beat < beats and len(inner) != fifo_depth - 1
        read = bool(inner) and (out_reg is None or left == 0)
        if left == 0 and out_reg is not None:
            left, out_reg = out_reg, None
        if read:
            out_reg = inner.popleft()
        if accept:
            if work[beat]:
                inner.append(int(work[beat]))
            beat += 1
        t += 1


def exposed_select_cycles(gemm_cycles, select_cycles) -> int:
    """Select cycles not hidden behind GEMMs when the blob of GEMM ``g + 1`` is written (into
    the second S buffer) while GEMM ``g`` runs: ``select[0] + Σ_g max(0, select[g+1] −
    gemm[g])``, both sequences in the order the GEMMs run (``docs/threshold-select.md``,
    "double-buffered, layer order")."""
    gemm_cycles, select_cycles = list(gemm_cycles), list(select_cycles)
    if len(gemm_cycles) != len(select_cycles):
        raise ValueError(f"{len(gemm_cycles)} GEMMs but {len(select_cycles)} select counts")
    if not select_cycles:
        return 0
    return int(select_cycles[0] + sum(max(0, s - g) for g, s in
                                      zip(gemm_cycles[:-1], select_cycles[1:], strict=True)))
