"""A training step's GEMMs with the RTL threshold-select unit in the loop, double-buffered.

:func:`run_step` runs the sparse GEMMs of a lowered step (``sw.lowering`` jobs) in one
simulator process of the core with the select unit (:class:`sim.harness.CoreSim`), with every
``S`` blob written by the unit (:mod:`sim.select_plan` says how) into one S buffer while the
GEMM before it reads the other, and the loader reading exactly what the unit wrote. The host's
Top-K (``sw.int_topk`` via the lowering) is only the reference: each blob read back from the S
buffer must equal the host's blob word for word, each pass-1 pair the host's pair.

Schedule (``docs/threshold-select.md``, "Scheduling against a layer's three GEMMs"): the core
operations run S block by S block (a GEMM larger than the buffers is several blocks, each with
its M blocks); while block ``i`` runs on buffer ``b``, the unit writes block ``i + 1``'s blob
(pass 2, GIVEN) into buffer ``1 - b`` and then, in the slack the cycle model predicts, the
pass 1 (THRESHOLD) of tensors needed later: the weights of every layer at step start, the
activations ``A_l`` once forward ``l - 1`` has run. The backward GEMMs run in an order that
hides the blobs (:func:`step_order`): input gradients in chain order, each weight gradient
placed after a GEMM long enough to hide its blob. Before a block starts, the host waits for the
unit's work up to that block's blob; a pass 1 queued after the blob writes no S buffer, so it
runs on behind the next GEMM (the core starts a GEMM on the bank of a THRESHOLD operation) and
may be longer than one window (ResNet-18's layer4 weights). The cycles the host waits are the
exposed ones, counted by the core itself (``sel.exposed_cycles``: unit busy, no GEMM running).
"""

from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np

from hw.contract.blob import encode_words
from hw.contract.codes import SelectMode
from hw.contract.cycles import ideal_cycles
from hw.contract.tiling import plan
from hw.contract.words import pack_d, unpack_c
from sw import int_topk

from . import select_plan as sp
from .bench import SimulationError

__all__ = ["StepSelect", "run_step", "step_order", "BlobMismatch"]


class BlobMismatch(SimulationError):
    """A blob (or pass-1 pair) of the RTL select unit differs from the host reference."""


@dataclasses.dataclass
class StepSelect:
    """What :func:`run_step` measured.

    ``jobs[i]`` (per job of the input): ``select_cycles`` (the unit's cycles of the job's blobs,
    plus its tensor's pass 1 for the first job using it), ``blobs``, ``blobs_rtl`` (written by
    the unit and equal to the host's), ``blobs_host`` (written by the host, see
    :mod:`sim.select_plan`), ``exposed_cycles`` (waited for before the job's first block),
    ``cycles`` (GEMM cycles), ``c`` and ``bit_exact``. ``exposed_cycles``: the core's counter
    over the step; ``gemm_cycles``: their sum; ``order``: the job indices as run;
    ``mismatches``: descriptions (empty when all equal); ``host_reasons``: why blobs came from
    the host; ``ticks``, ``wall``, ``cpu``: simulated cycles, seconds. ``blocks``: per job
    index, ``[(gemm cycles, blob cycles, estimated gemm, estimated blob)]`` of its S blocks
    in plan order, as measured and as the schedule estimated them (what
    :func:`sim.select_sampled.exposed_model` replays: :func:`sim.select_sampled.replay`);
    ``keys``: per job index, the tensor whose Top-K its blobs use (``"layer:W"``,
    ``"layer:A"``; ``thresholds`` has the pass-1 cycles of those run here).
    """

    jobs: list
    exposed_cycles: int
    gemm_cycles: int
    select_cycles: int
    thresholds: dict
    order: list
    mismatches: list
    host_reasons: dict
    ticks: int
    wall: float
    cpu: float
    blocks: dict = dataclasses.field(default_factory=dict)
    keys: dict = dataclasses.field(default_factory=dict)

    @property
    def blobs(self) -> int:
        return sum(j["blobs"] for j in self.jobs)

    @property
    def blobs_rtl(self) -> int:
        return sum(j["blobs_rtl"] for j in self.jobs)

    @property
    def blobs_host(self) -> int:
        return sum(j["blobs_host"] for j in self.jobs)


def _blocks(job, lim):
    """``[(kb, nb, [mb, ...])]``: the S blocks of ``job`` in plan order, each with its M
    blocks (``hw.contract.tiling.plan``, as ``sim.gemm.run_gemms`` cuts it)."""
    m, k, n = job.shape
    nz = job.s != 0
    out = {}
    for mb, kb, nb in plan(m, k, n, lambda kb: nz[kb].sum(axis=0), lim):
        out.setdefault((kb.start, kb.stop, nb.start, nb.stop), (kb, nb, []))[2].append(mb)
    return list(out.values())


def _gemm_estimate(job, kb, nb, mbs, rows, cols) -> float:
    """The dataflow bound of a block's M blocks plus ~20 cycles of start/drain each."""
    nnz = int(np.count_nonzero(job.s[kb, nb]))
    return sum(ideal_cycles(mb.stop - mb.start, nnz, rows, cols) + 20 for mb in mbs)


def step_order(jobs, est_first_blob, est_last_block, est_pass1=None) -> list:
    """Indices of ``jobs`` in the order the step runs them: forwards in layer order, then the
    backward passes: input gradients in chain order (last layer first), each weight gradient
    once its output gradient exists (``est_*``: cycle estimates per job index). Each next GEMM
    is the candidate whose choice, completed by the greedy rule (:func:`_greedy_pick`), leaves
    the least estimated exposure ``sum(max(0, first_blob(next) - last_block(previous)))``; a
    greedy choice alone put a long blob behind a short GEMM it could have avoided (digits:
    ``features.3``'s weight gradient behind the classifier's). ``est_pass1``: per job, pass-1
    cycles its first blob waits for unless the spare slack of the backward GEMMs before it
    (last block minus the next first blob) took them (the last layer's activations: they exist
    only after the last forward)."""
    layers = list(dict.fromkeys(j.layer for j in jobs))
    if not layers:  # nothing to run (e.g. every GEMM of a large model sampled)
        return []
    by = {(j.layer, j.pass_name): i for i, j in enumerate(jobs)}
    seq = [by[(name, "forward")] for name in layers if (name, "forward") in by]
    state = _Backward(jobs, layers, by)

    pass1 = est_pass1 or {}

    def exposure(prev, rest):
        total = spare = 0.0
        for c in rest:
            slack = est_last_block[prev] if prev is not None else 0
            wait = max(0.0, pass1.get(c, 0) - spare)
            spare -= pass1.get(c, 0) - wait
            total += max(0.0, est_first_blob[c] + wait - slack)
            spare += max(0.0, slack - est_first_blob[c] - wait)
            prev = c
        return total

    def rollout(st, prev):
        st, rest = st.copy(), []
        while st.cands():
            c = _greedy_pick(st, prev, est_first_blob, est_last_block)
            st.take(c)
            rest.append(c)
            prev = c
        return rest

    while state.cands():
        cur = seq[-1] if seq else None
        greedy = _greedy_pick(state, cur, est_first_blob, est_last_block)
        best, best_cost = greedy, None
        cands = state.cands()
        if len(cands) > 1 and len(cands) * state.left() <= _ROLLOUT_LIMIT:
            for c in [greedy] + [c for c in cands if c != greedy]:
                st = state.copy()
                st.take(c)
                cost = exposure(cur, [c] + rollout(st, c))
                if best_cost is None or cost < best_cost:
                    best, best_cost = c, cost
        state.take(best)
        seq.append(best)
    return seq + state.rest()


#: Candidates x GEMMs left above which :func:`step_order` stays greedy (the rollout is cubic).
_ROLLOUT_LIMIT = 4096


class _Backward:
    """The backward GEMMs not yet placed: the input-gradient chain and the weight gradients
    whose output gradient exists."""

    def __init__(self, jobs, layers, by):
        self.jobs, self.layers, self.by = jobs, layers, by
        self.chain = [by[(name, "backward_input")] for name in reversed(layers)
                      if (name, "backward_input") in by]
        self.ready = []
        self.done_w = set()
        self._release(len(layers) - 1)

    def copy(self):
        new = object.__new__(_Backward)
        new.jobs, new.layers, new.by = self.jobs, self.layers, self.by
        new.chain, new.ready, new.done_w = list(self.chain), list(self.ready), set(self.done_w)
        return new

    def _release(self, layer_idx):  # dY of layer_idx exists: its weight gradient may run
        if layer_idx >= 0 and (self.layers[layer_idx], "backward_weight") in self.by:
            i = self.by[(self.layers[layer_idx], "backward_weight")]
            if i not in self.done_w:
                self.done_w.add(i)
                self.ready.append(i)

    def cands(self):
        return ([self.chain[0]] if self.chain else []) + self.ready

    def left(self):
        return len(self.chain) + len(self.ready)

    def take(self, pick):
        if self.chain and pick == self.chain[0]:
            self.chain.pop(0)
            self._release(self.layers.index(self.jobs[pick].layer) - 1)
        else:
            self.ready.remove(pick)

    def rest(self):
        """Weight gradients of layers with no input gradient above them (never released)."""
        for i in range(len(self.layers)):
            self._release(i)
        return list(self.ready)


def _greedy_pick(state, cur, est_first_blob, est_last_block):
    """The greedy rule: of the GEMMs whose first blob fits behind ``cur``'s last block, the one
    whose own last block hides the most of what follows; if none fits, the chain goes on (weight
    gradients wait), else the shortest first blob."""
    cands = state.cands()
    slack = est_last_block[cur] if cur is not None else 0
    fits = [c for c in cands if est_first_blob[c] <= slack]
    if fits:
        return max(fits, key=lambda c: est_last_block[c])
    return state.chain[0] if state.chain else min(cands, key=lambda c: est_first_blob[c])


def run_step(jobs, *, model=None, sim=None, order=None, log=None, limits=None,
             held=None, check_c: bool = True) -> StepSelect:
    """Run the sparse GEMMs of ``jobs`` with the RTL select unit making every blob (module
    docstring). ``sim``: a running :class:`~sim.harness.CoreSim` of a core with the unit (or
    ``model`` to start one). Raises :class:`sim.harness.SelectFailed` when the unit reports an
    error; blob mismatches are returned in :attr:`StepSelect.mismatches`. ``limits``
    (``hw.contract.tiling.limits``, default the core's buffers) may cut smaller blocks.
    ``held``: a dict the caller keeps between calls (the host's copy of the unit's held pairs,
    per tensor and content): a tensor whose pass 1 ran in an earlier call is not counted again
    (e.g. the weights between a layer's forward and its backward). ``check_c``: compare each
    GEMM with ``sw.intref.gemm`` (``bit_exact``)."""
    from . import gemm as gemm_mod
    from .harness import CoreSim

    own = sim is None
    core = CoreSim(model) if own else sim
    try:
        runner = _Runner(core, jobs, limits or gemm_mod._limits(core.model), order, log)
        runner.held = held if held is not None else {}
        runner.check_c = check_c
        return runner.run()
    finally:
        if own:
            core.close()


class _Runner:
    def __init__(self, core, jobs, lim, order, log):
        if not core.sel_lanes:
            raise SimulationError("run_step needs a core with the threshold-select unit "
                                  "(sim.verilate.harness_model builds one by default)")
        self.core, self.jobs, self.lim, self.log = core, list(jobs), lim, log
        self.rows, self.cols = lim["rows"], lim["cols"]
        self.sels = [sp.selection_of(j) for j in self.jobs]
        self.unsupported = [sp.supported(j, s) for j, s in zip(self.jobs, self.sels,
                                                                 strict=True)]
        blocks = [_blocks(j, lim) for j in self.jobs]
        est_gemm = {i: [_gemm_estimate(j, kb, nb, mbs, self.rows, self.cols)
                        for kb, nb, mbs in blocks[i]] for i, j in enumerate(self.jobs)}
        est_blob = {i: [sp.given_cycles(kb.stop - kb.start, nb.stop - nb.start,
                                        int(np.count_nonzero(j.s[kb, nb])), core.sel_lanes,
                                        core.sel_banks)
                        for kb, nb, _ in blocks[i]] for i, j in enumerate(self.jobs)}
        # the last layer's activations exist only after the last forward: their pass 1 has
        # the backward GEMMs' slack only
        last = list(dict.fromkeys(j.layer for j in self.jobs))[-1] if self.jobs else None
        est_pass1 = {i: sp.threshold_cycles(sp.threshold_view(s.src), core.sel_lanes,
                                            by_index=core.sel_index_width > 0)
                     for i, (j, s) in enumerate(zip(self.jobs, self.sels, strict=True))
                     if j.layer == last and j.pass_name == "backward_weight"
                     and s.key.endswith(":A") and not self.unsupported[i]}
        self.order = list(order) if order is not None else step_order(
            self.jobs, {i: v[0] for i, v in est_blob.items()},
            {i: v[-1] for i, v in est_gemm.items()}, est_pass1)
        self.tasks = [(i, kb, nb, mbs, est_gemm[i][b], est_blob[i][b])
                      for i in self.order for b, (kb, nb, mbs) in enumerate(blocks[i])]
        # when each tensor's pass 1 may run: weights at step start, A_l after forward l-1
        layers = list(dict.fromkeys(j.layer for j in self.jobs))
        last_fwd_task = {}
        for t, (i, *_rest) in enumerate(self.tasks):
            if self.jobs[i].pass_name == "forward":
                last_fwd_task[self.jobs[i].layer] = t
        self.avail = {}
        for i, (j, s) in enumerate(zip(self.jobs, self.sels, strict=True)):
            if s.kind == "all" or self.unsupported[i]:
                continue
            if s.key.endswith(":A"):
                li = layers.index(j.layer)
                self.avail[s.key] = last_fwd_task.get(layers[li - 1], -1) if li else -1
            else:
                self.avail[s.key] = -1
        self.need_order = []  # tensors in the order their first blob is needed
        for i, *_rest in self.tasks:
            key = self.sels[i].key
            if key in self.avail and key not in self.need_order:
                self.need_order.append(key)
        self.thr = {}  # key -> (t, ties, cut, cycles)
        self.begun = set()
        self.pending = collections.deque()
        self.views, self.held_keys = {}, {}
        self.rec = [{"select_cycles": 0, "blobs": 0, "blobs_rtl": 0, "blobs_host": 0,
                     "exposed_cycles": 0, "cycles": 0, "busy": 0, "stall": 0, "idle": 0,
                     "runs": 0, "c": np.zeros((j.shape[0], j.shape[2]), dtype=np.int64)}
                    for j in self.jobs]
        self.thr_owner = {}
        for i in self.order:
            self.thr_owner.setdefault(self.sels[i].key, i)
        self.mismatches, self.host_reasons = [], collections.Counter()
        self.s_len = {}
        self.task_gemm, self.task_blob = [0] * len(self.tasks), [0] * len(self.tasks)

    # -- the unit's operations ----------------------------------------------------------------
    def _cached(self, key) -> bool:
        """The pair of ``key`` is in the host's copy from an earlier call (same tensor)."""
        if key in self.thr:
            return True
        hit = self.held.get(self._held_key(key))
        if hit is not None:
            self.thr[key] = hit
            self.begun.add(key)
        return hit is not None

    def _held_key(self, key):
        """``held``'s key of tensor ``key``: name, content hash and kept count (hashed once:
        the scheduler asks for it at every block)."""
        if key not in self.held_keys:
            sel = self.sels[self.thr_owner[key]]
            self.held_keys[key] = (key, hash(sel.src.tobytes()), sel.k)
        return self.held_keys[key]

    def _view(self, key):
        """The ``[K, N]`` stream view of tensor ``key`` (made once)."""
        if key not in self.views:
            self.views[key] = sp.threshold_view(self.sels[self.thr_owner[key]].src)
        return self.views[key]

    def _begin_thr(self, key, bank):
        if self._cached(key):
            return
        i = self.thr_owner[key]
        sel = self.sels[i]
        view = self._view(key)
        # with the side band the unit also finds the cut (a second, write-free pass over the
        # tensor in reference order): the tie position comes from the RTL, not the host
        self.core.select_begin(view, SelectMode.THRESHOLD, keep=sel.k, bank=bank,
                               by_index=self.core.sel_index_width > 0, read_blob=False,
                               label=f"{key} pass 1")
        self.begun.add(key)
        self.pending.append(("thr", key, bank))

    def _begin_blob(self, t, bank):
        i, kb, nb, *_ = self.tasks[t]
        job, sel = self.jobs[i], self.sels[i]
        if self.unsupported[i]:
            cmd = sp.BlockCommand((0, 0, 0, 0, 0, 0), host=self.unsupported[i])
            self.core.select_begin(job.s_dense[kb, nb], SelectMode.GIVEN, bank=bank,
                                   given=cmd.given, label=f"{job.label} (host blob)")
        else:
            if sel.kind == "all":
                pair = (0, 0, None)
            else:
                pair = self.thr[sel.key][:3]
            cmd = sp.block_command(sel, job.s, kb, nb, *pair,
                                   indexed=self.core.sel_index_width > 0)
            self.core.select_begin(job.s_dense[kb, nb], SelectMode.GIVEN, bank=bank,
                                   given=cmd.given, transpose=cmd.transpose,
                                   by_index=cmd.by_index, index=cmd.index,
                                   label=f"{job.label} S[{kb.start}:{kb.stop}, "
                                         f"{nb.start}:{nb.stop}]")
        self.pending.append(("blob", t, bank, cmd))

    def _wait_all(self):
        while self.pending:
            self._wait_one()

    def _wait_blob(self, t):
        """Wait for the unit's operations up to the blob of block ``t`` (in order): a pass 1
        queued after it runs on behind the next GEMM (it writes no S buffer)."""
        while self.pending:
            if self._wait_one() == t:
                return

    def _wait_thr(self, key):
        """Wait for the unit's operations up to the pass 1 of tensor ``key`` (in order)."""
        while self.pending and key not in self.thr:
            self._wait_one()

    def _wait_one(self):
        """Wait for the oldest queued operation and check it; returns the block of a blob."""
        item = self.pending.popleft()
        if item[0] == "thr":
            _, key, _bank = item
            st = self.core.select_wait(label=f"{key} pass 1")
            sel = self.sels[self.thr_owner[key]]
            t, ties = st.held["threshold"], st.held["ties"]
            want = int_topk.threshold_int(sel.src, sel.k)
            if (t, ties) != (int(want[0]), int(want[1])):
                self.mismatches.append(f"{key}: RTL pass 1 pair ({t}, {ties}) != host "
                                       f"{tuple(int(x) for x in want)}")
            if self.core.sel_index_width > 0:  # the unit's cut, the host's only checks it
                cut = st.held["cut_index"] if st.held["cut_any"] else None
                host_cut = int_topk.last_kept_tie_index(sel.src, t, ties)
                if cut != host_cut:
                    self.mismatches.append(f"{key}: RTL cut {cut} != host {host_cut}")
            else:
                cut = sp.tie_cut(sel.src, t, ties)
            self.thr[key] = (t, ties, cut, st.cycles)
            self.held[self._held_key(key)] = self.thr[key]
            self.rec[self.thr_owner[key]]["select_cycles"] += st.cycles
            return None
        _, t, bank, cmd = item
        i, kb, nb, *_ = self.tasks[t]
        job = self.jobs[i]
        st = self.core.select_wait(label=f"{job.label} S[{kb.start}:{kb.stop}, "
                                         f"{nb.start}:{nb.stop}]")
        rec = self.rec[i]
        rec["select_cycles"] += st.cycles
        rec["blobs"] += 1
        self.task_blob[t] = st.cycles
        want = encode_words(job.s[kb, nb])
        if cmd.host is not None:
            rec["blobs_host"] += 1
            self.host_reasons[cmd.host] += 1
            self.core.write_s(want, base=bank * self.core.s_bank_base)
            self.s_len[t] = len(want)
        else:
            got = st.blob if st.blob is not None else np.zeros(0, np.uint32)
            if got.shape == want.shape and np.array_equal(got, want):
                rec["blobs_rtl"] += 1
            else:
                diff = np.flatnonzero(got[:min(len(got), len(want))]
                                      != want[:min(len(got), len(want))])
                first = int(diff[0]) if diff.size else min(len(got), len(want))
                self.mismatches.append(
                    f"{job.label} S[{kb.start}:{kb.stop}, {nb.start}:{nb.stop}]: RTL blob "
                    f"{len(got)} words vs host {len(want)}, first difference at word "
                    f"{first}")
            self.s_len[t] = st.s_len
        return t

    # -- the step -----------------------------------------------------------------------------
    def _thr_ready(self, t):
        key = self.sels[self.tasks[t][0]].key
        return key not in self.avail or self._cached(key)

    def run(self) -> StepSelect:
        core = self.core
        t0 = time.perf_counter()
        cpu0 = core.cpu_seconds()
        ticks0 = core.ticks
        exposed0 = self._exposed()
        tasks = self.tasks
        if tasks:  # the first blob of the step: nothing to hide it behind
            i0 = tasks[0][0]
            key = self.sels[i0].key
            if key in self.avail and not self._cached(key):
                self._begin_thr(key, 0)
                self._wait_all()
            self._begin_blob(0, 0)
            self._wait_all()
            self.rec[i0]["exposed_cycles"] += self._exposed() - exposed0
        carry = 0.0  # estimated pass-1 work still queued when the last window ended
        for t, (i, _kb, _nb, _mbs, est_gemm, _est_blob) in enumerate(tasks):
            bank = t % 2
            before = self._exposed()
            if t + 1 < len(tasks):
                nxt = 1 - bank
                if not self._thr_ready(t + 1):
                    key = self.sels[tasks[t + 1][0]].key
                    if key not in self.begun:
                        self._begin_thr(key, nxt)
                    self._wait_thr(key)  # its pair is needed for the next blob's command
                    carry = 0.0 if not self.pending else carry
                self._begin_blob(t + 1, nxt)
                budget = est_gemm - tasks[t + 1][5] - carry
                # a pass 1 writes no S buffer: one whose pair no blob of the next two blocks
                # needs may run on behind the next GEMM, ahead of that GEMM's successor's blob
                spread = tasks[t + 1][4] - tasks[t + 2][5] if t + 2 < len(tasks) else 0.0
                mandatory = self.sels[tasks[t + 2][0]].key if t + 2 < len(tasks) else None
                begun = 0.0
                for key in self.need_order:
                    if key in self.begun or self.avail[key] >= t or self._cached(key):
                        continue
                    est = sp.threshold_cycles(self._view(key), core.sel_lanes,
                                              by_index=core.sel_index_width > 0)
                    if key != mandatory and est > budget + spread:
                        break
                    self._begin_thr(key, nxt)
                    budget -= est
                    begun += est
                carry = max(0.0, carry + tasks[t + 1][5] + begun - est_gemm)
            self._run_block(t, bank)
            if t + 1 < len(tasks):
                self._wait_blob(t + 1)  # the next block's blob; a pass 1 after it runs on
                carry = carry if self.pending else 0.0
            else:
                self._wait_all()
            # what this window left exposed delays the next block (the last: the step's end)
            owner = tasks[t + 1][0] if t + 1 < len(tasks) else i
            self.rec[owner]["exposed_cycles"] += self._exposed() - before
        exposed = self._exposed() - exposed0
        ticks = core.ticks - ticks0
        for i, rec in enumerate(self.rec):
            from sw import intref

            j = self.jobs[i]
            rec["bit_exact"] = (bool(np.array_equal(rec["c"], intref.gemm(j.d, j.s)))
                                if self.check_c else None)
        return StepSelect(
            jobs=self.rec, exposed_cycles=exposed,
            gemm_cycles=sum(r["cycles"] for r in self.rec),
            select_cycles=sum(r["select_cycles"] for r in self.rec),
            thresholds={k: {"threshold": v[0], "ties": v[1], "cycles": v[3]}
                        for k, v in self.thr.items()},
            order=self.order, mismatches=self.mismatches,
            host_reasons=dict(self.host_reasons), ticks=ticks,
            wall=time.perf_counter() - t0, cpu=core.cpu_seconds() - cpu0,
            blocks=self._blocks_measured(),
            keys={i: s.key for i, s in enumerate(self.sels)})

    def _blocks_measured(self) -> dict:
        out = {}
        for t, (i, _kb, _nb, _mbs, est_gemm, est_blob) in enumerate(self.tasks):
            out.setdefault(i, []).append((self.task_gemm[t], self.task_blob[t], est_gemm,
                                          est_blob))
        return out

    def _exposed(self) -> int:
        """The core's free-running ``sel.exposed_cycles`` now (a status read, no clock)."""
        return self.core.exposed_cycles

    def _run_block(self, t, bank):
        i, kb, nb, mbs, *_ = self.tasks[t]
        job, rec = self.jobs[i], self.rec[i]
        for mb in mbs:
            m = mb.stop - mb.start
            self.core.write_d(pack_d(job.d[mb, kb], self.rows))
            stats, c = self.core.run(m, kb.stop - kb.start, nb.stop - nb.start, self.s_len[t],
                                     s_bank=bank)
            if stats["error"]:
                raise SimulationError(f"{job.label}: the core reported error code "
                                      f"{stats['code']} on block M[{mb.start}:{mb.stop}] "
                                      f"K[{kb.start}:{kb.stop}] N[{nb.start}:{nb.stop}] "
                                      f"reading the select unit's blob")
            for key in ("cycles", "busy", "stall", "idle"):
                rec[key] += stats[key]
            self.task_gemm[t] += stats["cycles"]
            rec["runs"] += 1
            rec["c"][mb, nb] += unpack_c(c, m, nb.stop - nb.start, self.rows)
