"""Threshold select of the GEMMs the compare job only samples, on the RTL unit where it fits.

A GEMM too large to simulate whole (``--sample-ops``, ResNet-50) does not run in the select
loop (:mod:`sim.select_loop`), so its ``S`` blobs are not made there. This module makes as much
of them on the RTL unit as the job can afford and extrapolates the rest:

* the weights ``W`` (forward ``Wsᵀ`` and input-gradient ``Ws``; small): every tensor's pass 1
  (THRESHOLD ``by_index``) and every S block's blob (GIVEN) on the RTL unit, each blob equal to
  the host's Top-K word for word;
* the activations ``A`` (weight gradient; an im2col'd ``A`` of a convolution is 9× the
  activations for a 3×3 kernel): the pass 1 on the whole ``A`` on the RTL (pair and cut
  checked against the host's) for a random fraction :data:`A_PASS1_FRACTION` of the layers
  (all of them by default; the formula's, exact as it depends on the shape only, for the
  others), and the blobs of every S block (:data:`A_BLOBS` = 0, the default) or of a simple
  random sample of :data:`A_BLOBS` of them (drawn apart from the sample of its core
  operations, :mod:`sim.sampling`, so that a smaller GEMM sample does not shrink this one) on
  the RTL unit, checked word for word; with a sample, the other blocks' cycles by the ratio
  estimator (the RTL cycles of the sampled blobs over the formula's, times the formula's
  total, with its 95 % bound), the formula being ``hw.contract.cycles.select_cycles`` from
  each block's non-zero count. The blocks of an im2col'd ``A`` whose every blob is made are
  not kept: the dense and host blocks are gathered from the tensor (``A`` and its Top-K mask,
  through the block's im2col positions) when the unit needs them, and each host block is
  checked against a CRC-32 of the lowering's S block taken when the GEMM was planned.

Every RTL operation here runs alone (the unit writes, then the host reads the blob back): no
GEMM runs beside it, so the exposure of these GEMMs' select cycles comes from a model
(:func:`exposed_model`): the step's double buffer at S-block granularity, each block's GEMM
cycles the GEMM's extrapolated RTL cycles shared over its blocks by the cycle model, each
blob's cycles the RTL's where simulated and the extrapolation's elsewhere, the pass 1 of a
tensor in the slack left once it exists (weights at step start, ``A_l`` after forward
``l - 1``)."""

from __future__ import annotations

import dataclasses
import math
import time
import zlib

import numpy as np

from hw.contract.blob import encode_words
from hw.contract.codes import SelectMode
from hw.contract.cycles import select_cycles
from sw import int_topk

from . import select_plan as sp

__all__ = ["A_PASS1_FRACTION", "SampledSelect", "keep", "run", "exposed_model", "replay"]

#: Fraction of the layers whose whole-``A`` pass 1 runs on the RTL unit (random, per
#: ``--seed``); the others take the formula, which the RTL ones check. All of them: on
#: ResNet-50 at batch 32 that is ~21 M cycles of the unit, ~40 % of the step's select cycles.
A_PASS1_FRACTION = 1.0

#: ``A`` blobs per sampled GEMM made on the RTL unit (a simple random sample of its S blocks;
#: all of them when it has no more), the others extrapolated; 0: every block's, nothing
#: extrapolated (the default since the core's clock is gated in select-only runs,
#: ``hw.core.SwatCore``'s ``gemm_clock_gate``).
A_BLOBS = 0

#: S blocks of an im2col'd ``A`` whose every blob is made (:data:`A_BLOBS` = 0) checked when
#: the GEMM is planned to be the per-tensor Top-K (:func:`_check_blocks`, which decides
#: whether the unit can make them; every block is then checked by its CRC-32 in :func:`run`)
CHECK_BLOCKS = 48

#: RTL blobs per GEMM also checked against the formula given their kept matrix (a cycle-by-cycle
#: model in Python, ~2 µs a cycle: the first ones only)
EXACT_CHECKS = 4


@dataclasses.dataclass(eq=False)
class SampledSelect:
    """What the select work of one sampled GEMM needs, kept when it is planned.

    ``sel``: the :class:`sim.select_plan.Selection` (``src`` kept only when its pass 1 runs
    on the RTL: ``rtl_pass1``); ``pair``: the host's ``(t, ties, cut)``; ``blocks``:
    ``[(kb, nb)]`` of ``S`` in plan order with ``nnz`` and ``gemm_est`` (cycle-model estimate
    of the block's core operations) each; ``picked``: the blocks whose blob the RTL makes,
    with their ``dense`` and host ``sparse`` blocks; ``host``: why none is made on the RTL;
    ``digests``: for an im2col'd ``A`` whose every blob is made (``dense`` and ``sparse`` then
    empty: gathered from ``sel.src`` in :func:`run`), the CRC-32 of each S block."""

    label: str
    layer: str
    pass_name: str
    sel: object
    s_shape: tuple
    pair: tuple
    view_shape: tuple
    blocks: list
    nnz: list
    gemm_est: list
    picked: list
    dense: dict
    sparse: dict
    rtl_pass1: bool
    host: str | None = None
    digests: list | None = None


class _Im2colPos:
    """Reference positions of an im2col'd ``A`` computed per block (``pos[kb, nb]``), from
    the positions of one batch item: the whole array is 8 bytes per element of ``im2col``."""

    def __init__(self, a_shape, module):
        from sw.lowering import PAD_INDEX, im2col_source_index

        self.idx0 = im2col_source_index((1, *a_shape[1:]), module)
        self.pad = PAD_INDEX
        self.rows = self.idx0.shape[0]
        self.item = int(np.prod(a_shape[1:]))

    def __getitem__(self, key):
        kb, nb = key
        r = np.arange(kb.start, kb.stop)
        base = self.idx0[:, nb][r % self.rows]  # the block's columns, then its rows
        out = base + (r // self.rows * self.item)[:, None]
        out[base == self.pad] = -1
        return out


def _selection(job):
    """The job's :class:`~sim.select_plan.Selection` without the whole im2col position array
    (``pos`` computed per block)."""
    if job.pass_name != "backward_weight" or job.kind == "linear" \
            or getattr(job, "select_src", None) is None:
        return sp.selection_of(job)
    if np.array_equal(job.s, job.s_dense):
        return sp.Selection(f"{job.layer}:backward_weight", "all")
    src = np.ascontiguousarray(job.select_src)
    return sp.Selection(f"{job.layer}:A", "im2col", src,
                        int_topk.k_from_density(job.density, src.size),
                        _Im2colPos(src.shape, job.select_module))


def _check_blocks(sel, keep_, s_blocks) -> str | None:
    """``None`` when the host blocks are the per-tensor Top-K of ``sel.src`` (``keep_``, its
    mask: what the unit makes), else why not (groups, a structured mask)."""
    flat = np.concatenate([np.where(keep_, sel.src, 0).astype(np.int8).ravel(),
                           np.zeros(1, np.int8)])
    for (kb, nb), blk in s_blocks:
        if not np.array_equal(flat[sel.pos[kb, nb]], blk):
            return sp.NOT_PER_TENSOR
    return None


def keep(job, sample, seed: int, n_blobs: int | None = None) -> SampledSelect:
    """The :class:`SampledSelect` of the sampled sparse GEMM ``job`` (operands still there)
    and its :class:`sim.sampling.Sample` ``sample``: W blocks all, A blocks a simple random
    sample of ``n_blobs`` (default :data:`A_BLOBS`; 0: all) of its S blocks; the whole ``A``
    kept for an RTL pass 1 with probability :data:`A_PASS1_FRACTION` (``seed`` and the layer
    name decide both), and for the blocks of an im2col'd ``A`` gathered from it."""
    groups, est = {}, {}
    for i, (_mb, kb, nb) in enumerate(sample.blocks):
        key = (kb.start, kb.stop, nb.start, nb.stop)
        if key not in groups:
            groups[key] = (len(groups), kb, nb)
            est[key] = 0.0
        est[key] += float(sample.estimates[i])
    blocks = [(kb, nb) for _b, kb, nb in groups.values()]
    weights = job.pass_name != "backward_weight"
    n_blobs = A_BLOBS if n_blobs is None else n_blobs
    pick = np.random.default_rng([seed, zlib.crc32(job.label.encode()), 8])
    if weights or not n_blobs or n_blobs >= len(blocks):
        picked = list(range(len(blocks)))
    else:
        picked = sorted(int(b) for b in pick.choice(len(blocks), size=n_blobs, replace=False))
    sel = _selection(job)
    digests = None
    if sel.kind == "im2col" and len(picked) == len(blocks):  # gathered from A in run()
        nnz, digests = [], []
        for kb, nb in blocks:
            blk = np.ascontiguousarray(job.s[kb, nb])
            nnz.append(int(np.count_nonzero(blk)))
            digests.append(zlib.crc32(blk))
        checked = picked if len(blocks) <= CHECK_BLOCKS else sorted(
            int(b) for b in pick.choice(len(blocks), size=CHECK_BLOCKS, replace=False))
        dense, sparse = {}, {}
    else:
        nnz = [int(np.count_nonzero(job.s[kb, nb])) for kb, nb in blocks]
        checked = picked
        dense = {b: np.ascontiguousarray(job.s_dense[blocks[b]]) for b in picked}
        sparse = {b: np.ascontiguousarray(job.s[blocks[b]]) for b in picked}
    host = None
    pair, view = (0, 0, None), (0, 0)
    if sel.kind != "all":
        t, ties = (int(v) for v in int_topk.threshold_int(sel.src, sel.k))
        mask = int_topk.select_mask_threshold(sel.src, t, ties)
        tied = np.flatnonzero(mask.ravel() & (int_topk.magnitudes(sel.src).ravel() == t))
        pair = (t, ties, int(tied[-1]) if tied.size else None)  # last_kept_tie_index
        if sel.kind == "im2col":
            host = _check_blocks(sel, mask, [(blocks[b], np.ascontiguousarray(job.s[blocks[b]]))
                                             for b in checked])
        else:
            host = sp.supported(job, sel)
        view = sp.threshold_view(sel.src).shape
    if host is not None:
        digests = None  # no blob made by the unit: nothing to gather
    rng = np.random.default_rng([seed, zlib.crc32(job.layer.encode()), 7])
    rtl_pass1 = sel.kind != "all" and host is None and (
        weights or rng.random() < A_PASS1_FRACTION)
    if not rtl_pass1 and sel.kind != "all" and digests is None:
        sel.src = None  # the pair is the host's: the whole tensor is not needed
    return SampledSelect(job.label, job.layer, job.pass_name, sel, tuple(job.s.shape), pair,
                         view, blocks, nnz, [est[k] for k in groups], picked, dense,
                         sparse, rtl_pass1, host, digests)


@dataclasses.dataclass
class SampledResult:
    """What :func:`run` measured: per plan (job index) ``select_cycles`` (RTL + extrapolated),
    ``bound95``, ``rtl_cycles`` (the part simulated), ``blobs`` / ``blobs_rtl`` (S blocks,
    blobs the unit made equal to the host's), ``simulated`` (one line), ``blob_cycles`` per
    block (RTL or extrapolated) and ``pass1`` (cycles, ``"rtl"`` / ``"formula"``) when this
    job owns its tensor's pass 1; ``checks``: the formula against the RTL."""

    jobs: dict
    mismatches: list
    checks: dict
    ticks: int
    wall: float
    cpu: float
    processes: list = dataclasses.field(default_factory=list)  # {cycles, wall, cpu} each

    @property
    def blobs_rtl(self) -> int:
        return sum(r["blobs_rtl"] for r in self.jobs.values())

    @property
    def blobs(self) -> int:
        return sum(r["blobs"] for r in self.jobs.values())


def _ratio(y, x, big_x, n_all):
    """Ratio estimator ``(Σy/Σx)·big_x`` and its 95 % bound (:mod:`sim.sampling`)."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    n = len(y)
    r = float(y.sum() / x.sum()) if x.sum() else 1.0
    if n >= n_all:
        return r * big_x, 0.0, r
    if n < 2:
        return r * big_x, float("inf"), r
    var = (1 - n / n_all) / n * float(((y - r * x) ** 2).sum()) / (n - 1)
    return r * big_x, 1.96 * n_all * math.sqrt(var), r


#: Simulator processes :func:`run` spreads the select work over by default (at most the
#: machine's cores): the compare job runs it beside its GEMM batch, which ends first.
PROCESSES = 2


def run(plans: dict, model, *, done_pairs=None, log=None,
        processes: int | None = None) -> SampledResult:
    """Run the RTL part of ``plans`` (``{job index: SampledSelect}``, in step order) in
    simulator processes of ``model`` (a core with the select unit; ``processes``, default
    :data:`PROCESSES` but at most the cores, each with the plans of whole layers, so that a
    tensor's pass 1 and its blobs stay in one) and extrapolate the rest. The figures do not
    depend on how the layers are spread (every operation of the unit starts idle and alone).
    ``done_pairs``: tensors whose pass 1 the select loop already ran (not counted again)."""
    import concurrent.futures
    import os

    done_pairs = set(done_pairs or ())
    owner = {}
    for i, p in plans.items():
        owner.setdefault(p.sel.key, i)
    n = max(1, min(PROCESSES if processes is None else processes, os.cpu_count() or 1,
                   len({p.layer for p in plans.values()})))
    t0 = time.perf_counter()
    if n == 1:
        parts = [_run_part(plans, model, done_pairs, owner)]
    else:
        lanes = model.attrs.get("sel_lanes") or 1
        with concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="select") as pool:
            parts = list(pool.map(lambda part: _run_part(part, model, done_pairs, owner),
                                  _spread(plans, n, lanes)))
    wall = time.perf_counter() - t0
    out, per_plan, procs = {}, {}, []
    checks = {"pass1_rtl": 0, "pass1_worst_error": 0.0, "blobs_rtl": 0, "blobs_exact_checked": 0,
              "blob_exact_worst_error": 0.0, "blob_estimate_worst_error": 0.0}
    for part_out, part_mm, part_checks, proc in parts:
        out.update(part_out)
        per_plan.update(part_mm)
        for key, v in part_checks.items():
            checks[key] = max(checks[key], v) if key.endswith("_error") else checks[key] + v
        procs.append(proc)
    mismatches = [msg for i in plans for msg in per_plan.get(i, [])]
    ticks = sum(p["cycles"] for p in procs)
    res = SampledResult({i: out[i] for i in plans}, mismatches, checks, ticks, wall,
                        sum(p["cpu"] for p in procs), procs)
    if log:
        log(f"select of the sampled GEMMs: {res.blobs_rtl} of {res.blobs} blobs made by the RTL "
            f"unit (equal to the host's), {checks['pass1_rtl']} pass 1 on the RTL, "
            f"{ticks:,} cycles in {wall:.1f} s ({len(procs)} simulator processes); "
            f"{len(mismatches)} mismatches")
    return res


def _spread(plans: dict, n: int, lanes: int) -> list:
    """``plans`` in ``n`` parts of whole layers (step order kept in each), the layers placed
    longest first on the part with the fewest estimated select cycles so far (a unit of
    ``lanes`` lanes: blobs one beat of ``lanes`` a cycle, a pass 1 by index two)."""
    cost, layers = {}, {}
    for i, p in plans.items():
        layers.setdefault(p.layer, []).append(i)
        c = sum(sp.given_cycles(kb.stop - kb.start, nb.stop - nb.start, nz, lanes)
                for (kb, nb), nz in zip(p.blocks, p.nnz, strict=True)) if not p.host else 0
        cost[p.layer] = cost.get(p.layer, 0) + c + 2 * p.view_shape[0] * p.view_shape[1] // lanes
    load, parts = [0] * n, [[] for _ in range(n)]
    for layer in sorted(layers, key=lambda name: -cost[name]):
        k = load.index(min(load))
        load[k] += cost[layer]
        parts[k] += layers[layer]
    return [{i: plans[i] for i in sorted(part, key=list(plans).index)} for part in parts if part]


def _run_part(plans: dict, model, done_pairs: set, owner: dict):
    """The select work of ``plans`` in one simulator process: ``(records, {plan: mismatches},
    checks, {cycles, wall, cpu})``."""
    from .harness import CoreSim

    out, mismatches, per_plan = {}, [], {}
    checks = {"pass1_rtl": 0, "pass1_worst_error": 0.0, "blobs_rtl": 0, "blobs_exact_checked": 0,
              "blob_exact_worst_error": 0.0, "blob_estimate_worst_error": 0.0}
    core = CoreSim(model)
    try:
        lanes, banks = core.sel_lanes, core.sel_banks
        t0, cpu0, ticks0 = time.perf_counter(), core.cpu_seconds(), core.ticks
        pairs = {}
        bank = 0
        for i, p in plans.items():
            mark = len(mismatches)
            rec = {"blobs": len(p.blocks), "blobs_rtl": 0, "rtl_cycles": 0, "pass1": None}
            pair = p.pair
            if p.sel.kind != "all" and owner[p.sel.key] == i and p.sel.key not in done_pairs:
                if p.rtl_pass1:
                    view = sp.threshold_view(p.sel.src)
                    core.select_begin(view, SelectMode.THRESHOLD, keep=p.sel.k, bank=bank,
                                      by_index=core.sel_index_width > 0, read_blob=False,
                                      label=f"{p.sel.key} pass 1")
                    st = core.select_wait(label=f"{p.sel.key} pass 1")
                    cut = st.held["cut_index"] if st.held["cut_any"] else None
                    got = (int(st.held["threshold"]), int(st.held["ties"]), cut)
                    if got != tuple(p.pair):
                        mismatches.append(f"{p.sel.key}: RTL pass 1 (t, ties, cut) {got} != "
                                          f"host {tuple(p.pair)}")
                    pairs[p.sel.key] = got
                    want = sp.threshold_cycles(view, lanes, by_index=core.sel_index_width > 0)
                    checks["pass1_rtl"] += 1
                    checks["pass1_worst_error"] = max(checks["pass1_worst_error"],
                                                      abs(want / st.cycles - 1))
                    rec["pass1"] = (st.cycles, "rtl")
                    rec["rtl_cycles"] += st.cycles
                    if p.digests is None:  # else its blocks are gathered from it below
                        p.sel.src = None
                else:
                    rec["pass1"] = (select_cycles(*p.view_shape, lanes,
                                                  mode=SelectMode.THRESHOLD,
                                                  by_index=core.sel_index_width > 0), "formula")
            pair = pairs.get(p.sel.key, pair)
            y, x = [], []
            est = [sp.given_cycles(kb.stop - kb.start, nb.stop - nb.start, nz, lanes, banks)
                   for (kb, nb), nz in zip(p.blocks, p.nnz, strict=True)]
            blob = dict.fromkeys(range(len(p.blocks)))
            shape = np.broadcast_to(np.int8(0), p.s_shape)
            gather = _Gather(p) if p.digests is not None and not p.host else None
            for b in ([] if p.host else p.picked):
                kb, nb = p.blocks[b]
                what = f"{p.label} S[{kb.start}:{kb.stop}, {nb.start}:{nb.stop}]"
                if gather is not None:  # every block: from A, checked against the lowering's
                    pos, dense, host = gather.block(kb, nb)
                    if zlib.crc32(host) != p.digests[b]:
                        mismatches.append(f"{what}: the Top-K of the tensor through the block's "
                                          f"positions is not the lowering's S block (CRC-32)")
                else:
                    pos, dense, host = None, p.dense.pop(b), p.sparse.pop(b)
                cmd = sp.block_command(p.sel, shape, kb, nb, *pair,
                                       indexed=core.sel_index_width > 0, pos=pos)
                core.select_begin(dense, SelectMode.GIVEN, bank=bank, given=cmd.given,
                                  transpose=cmd.transpose, by_index=cmd.by_index,
                                  index=cmd.index, label=what)
                st = core.select_wait(label=what)
                bank = 1 - bank
                want = encode_words(host)
                got = st.blob if st.blob is not None else np.zeros(0, np.uint32)
                if got.shape == want.shape and np.array_equal(got, want):
                    rec["blobs_rtl"] += 1
                else:
                    mismatches.append(f"{what}: RTL blob {len(got)} words vs host "
                                      f"{len(want)}")
                if p.pass_name == "backward_weight" and len(y) < EXACT_CHECKS:
                    exact = select_cycles(host.shape[0], host.shape[1], lanes,
                                          mode=SelectMode.GIVEN, kept=host, banks=banks)
                    checks["blobs_exact_checked"] += 1
                    checks["blob_exact_worst_error"] = max(checks["blob_exact_worst_error"],
                                                           abs(exact / st.cycles - 1))
                checks["blobs_rtl"] += 1
                checks["blob_estimate_worst_error"] = max(
                    checks["blob_estimate_worst_error"], abs(est[b] / st.cycles - 1))
                blob[b] = st.cycles
                y.append(st.cycles)
                x.append(est[b])
                rec["rtl_cycles"] += st.cycles
            total, bound, r = _ratio(y, x, float(sum(est)), len(p.blocks)) if y else \
                (float(sum(est)), 0.0, 1.0)
            rec["blob_cycles"] = [blob[b] if blob[b] is not None else r * est[b]
                                  for b in range(len(p.blocks))]
            rec["blob_est"] = est  # the formula's, what a scheduler decides with
            p1 = rec["pass1"][0] if rec["pass1"] else 0
            rec["select_cycles"] = int(round(total)) + p1
            rec["bound95"] = round(bound, 1)
            rec["simulated"] = _describe(p, rec)
            out[i] = rec
            per_plan[i] = mismatches[mark:]
            if gather is not None:
                p.sel.src = gather = None  # the tensor's blocks are made
        proc = {"cycles": core.ticks - ticks0, "wall": time.perf_counter() - t0,
                "cpu": core.cpu_seconds() - cpu0}
    finally:
        core.close()
    return out, per_plan, checks, proc


class _Gather:
    """The dense and host (Top-K) blocks of an im2col'd ``A`` from the tensor (``p.sel.src``)
    and the host's pair ``p.pair``, through the blocks' im2col positions (padding: 0)."""

    def __init__(self, p):
        src = p.sel.src
        keep_ = int_topk.select_mask_threshold(src, *p.pair[:2])
        zero = np.zeros(1, np.int8)
        self.dense = np.concatenate([src.ravel(), zero])  # position -1 -> the appended 0
        self.kept = np.concatenate([np.where(keep_, src, 0).astype(np.int8).ravel(), zero])
        self.pos = p.sel.pos

    def block(self, kb, nb):
        """``(positions, dense block, host block)`` of ``S[kb, nb]``."""
        pos = self.pos[kb, nb]
        return pos, self.dense[pos], self.kept[pos]


def _describe(p, rec) -> str:
    """What of a sampled GEMM's select ran on the RTL (one line for the table)."""
    if p.sel.kind == "all":
        head = "no Top-K"
    elif rec["pass1"] is None:
        head = "pass 1 counted on the tensor's first GEMM"
    else:
        head = f"pass 1 {rec['pass1'][1]}"
    if p.host:
        return f"{head}; blobs formula ({p.host})"
    n = rec["blobs_rtl"]
    if n == len(p.blocks):
        return f"{head}; all {n} blobs RTL"
    return f"{head}; {n} of {len(p.blocks)} blobs RTL, rest extrapolated"


def exposed_model(seq) -> tuple[int, list]:
    """Select cycles not hidden behind GEMMs in a double-buffered step, by S block, with the
    select loop's schedule (:class:`sim.select_loop._Runner`) replayed on cycle counts.

    ``seq``: per GEMM in the order the step runs them, ``(blocks, pass1)``: ``blocks`` the
    ``(gemm cycles, blob cycles)`` of each S block, optionally followed by the estimates of both
    the scheduler decides with (``(gemm, blob, est gemm, est blob)``; default the cycles
    themselves), ``pass1`` ``(key, cycles, available)`` or ``(key, cycles, available,
    estimate)`` or ``None``: the pass 1 its blobs need, ``available`` the index in ``seq`` of
    the GEMM after which the tensor exists (-1: at step start). As in the loop: the unit runs
    its queued operations one after the other; the step's first blob (and its pass 1) has
    nothing to hide behind; while block ``t`` runs, the unit writes block ``t + 1``'s blob and
    then starts the pass 1 of tensors that exist, in the order they are needed, as long as each
    fits the window's estimated slack (``gemm[t] - blob[t + 1]`` less the work carried over,
    plus the next window's) or is needed two blocks on; a pass 1 writes no S buffer and runs on
    behind the next GEMM. The host waits for the unit up to block ``t + 1``'s blob after GEMM
    ``t``, and for a pass 1 not done when the next blob needs its pair: those waits (unit busy,
    no GEMM) are the exposed cycles, each charged to the GEMM whose block waited. Returns the
    total and each GEMM's share."""
    import collections

    # per S block: (GEMM, gemm, blob, key, estimated gemm, estimated blob); the decisions
    # (what fits a window) use the estimates, as the loop does, the timing the cycles
    tasks = []
    for g, (blocks, p1) in enumerate(seq):
        for blk in blocks:
            gemm, blob = float(blk[0]), float(blk[1])
            eg, eb = (float(blk[2]), float(blk[3])) if len(blk) > 2 else (gemm, blob)
            tasks.append((g, gemm, blob, p1[0] if p1 else None, eg, eb))
    dur, est_dur, avail, need = {}, {}, {}, []
    last_task = {}
    for t, (g, *_rest) in enumerate(tasks):
        last_task[g] = t
    for _blocks, p1 in seq:
        if p1 is not None and p1[0] not in dur:
            dur[p1[0]] = float(p1[1])
            est_dur[p1[0]] = float(p1[3]) if len(p1) > 3 else float(p1[1])
            avail[p1[0]] = last_task.get(p1[2], -1) if p1[2] >= 0 else -1
    for task in tasks:
        key = task[3]
        if key is not None and key not in need:
            need.append(key)
    share = [0.0] * len(seq)
    st = {"now": 0.0, "free": 0.0}
    pending, done, begun = collections.deque(), set(), set()

    def begin(kind, ident, cycles):
        st["free"] = max(st["free"], st["now"]) + cycles
        pending.append((kind, ident, st["free"]))
        if kind == "thr":
            begun.add(ident)

    def wait_one(owner):
        kind, ident, end = pending.popleft()
        if end > st["now"]:
            share[owner] += end - st["now"]
            st["now"] = end
        if kind == "thr":
            done.add(ident)
        return kind, ident

    if tasks:
        g0, _gemm, blob0, k0, *_est = tasks[0]
        if k0 is not None and k0 not in done:
            begin("thr", k0, dur[k0])
        begin("blob", 0, blob0)
        while pending:
            wait_one(g0)
    carry = 0.0
    for t, (g, gemm, _blob, _key, est_gemm, _est_blob) in enumerate(tasks):
        nxt = tasks[t + 1] if t + 1 < len(tasks) else None
        owner = nxt[0] if nxt else g
        if nxt:
            k = nxt[3]
            if k is not None and k not in done:
                if k not in begun:
                    begin("thr", k, dur[k])
                while k not in done:
                    wait_one(owner)
                carry = carry if pending else 0.0
            begin("blob", t + 1, nxt[2])
            budget = est_gemm - nxt[5] - carry
            spread = nxt[4] - tasks[t + 2][5] if t + 2 < len(tasks) else 0.0
            mandatory = tasks[t + 2][3] if t + 2 < len(tasks) else None
            started = 0.0
            for key in need:
                if key in begun or key in done or avail[key] >= t:
                    continue
                if key != mandatory and est_dur[key] > budget + spread:
                    break
                begin("thr", key, dur[key])
                budget -= est_dur[key]
                started += est_dur[key]
            carry = max(0.0, carry + nxt[5] + started - est_gemm)
        st["now"] += gemm
        if nxt:
            while pending:
                if wait_one(owner) == ("blob", t + 1):
                    break
            carry = carry if pending else 0.0
        else:
            while pending:
                wait_one(owner)
    out = [int(round(x)) for x in share]
    return int(round(sum(share))), out


def replay(jobs, blocks, keys, pass1, order=None) -> tuple[int, dict, list]:
    """:func:`exposed_model` over a step's sparse GEMMs ``jobs`` (``.layer``, ``.pass_name``)
    as the select loop would schedule them: ``blocks[n]`` the ``(gemm cycles, blob cycles)``
    of job ``n``'s S blocks in plan order (measured or extrapolated), each optionally with the
    estimates the scheduler decides with (:func:`exposed_model`), ``keys[n]`` the tensor
    whose pair its blobs use, ``pass1`` ``{key: cycles}`` of the pass 1s to schedule (a key
    not in it costs nothing: no Top-K, or counted elsewhere). ``order``: the positions of
    ``jobs`` as run; by default :func:`sim.select_loop.step_order` on these cycles (the
    loop's rule, on the estimates). A weight's pass 1 may run from the step's start, ``A_l``'s
    once the forward of the layer before ran. Returns ``(total, {n: exposed share}, order)``.

    With ``jobs`` a whole step (the GEMMs the loop runs with those it samples), no GEMM's
    select is left without the earlier GEMMs it hides behind in the step; the select loop's
    own run of a subset alone (ResNet-50: the fc GEMMs) is the check, not the figure."""
    from . import select_loop

    layers = list(dict.fromkeys(j.layer for j in jobs))
    if order is None:
        last = layers[-1] if layers else None
        est_p1 = {n: pass1.get(keys[n], 0) for n, j in enumerate(jobs)
                  if j.layer == last and j.pass_name == "backward_weight"}
        order = select_loop.step_order(jobs, {n: b[0][-1] for n, b in enumerate(blocks)},
                                       {n: b[-1][-2] for n, b in enumerate(blocks)}, est_p1)
    seq = []
    for pos, n in enumerate(order):
        j, key = jobs[n], keys[n]
        p1 = None
        if key in pass1:
            li = layers.index(j.layer)
            avail = -1
            if key.endswith(":A") and li > 0:  # A_l exists after the forward of layer l - 1
                # (as the loop counts it: from the step's start when that forward is not
                # among ``jobs``)
                avail = next((q for q, m in enumerate(order[:pos])
                              if jobs[m].pass_name == "forward"
                              and jobs[m].layer == layers[li - 1]), -1)
            p1 = (key, pass1[key], avail)
        seq.append((blocks[n], p1))
    total, share = exposed_model(seq)
    return total, dict(zip(order, share, strict=True)), list(order)
