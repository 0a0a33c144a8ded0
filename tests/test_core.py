"""SwatCore in the Amaranth simulator: bit-exact against sw.intref.gemm, ragged shapes, edge
values, every error code ends the operation (done) instead of hanging, counters, host ports."""

import re

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.contract import malformed
from hw.contract.cycles import schedule_cycles
from hw.contract.words import gather_c
from hw.core import SwatCore
from sw import compress, intref


class CoreTB:
    """Testbench for :class:`SwatCore` (one simulator, several operations)."""

    def __init__(self, *, rows=2, cols=2, d_depth=256, s_depth=256, c_depth=64,
                 result_logs=True, **extra):
        self.dut = SwatCore(rows=rows, cols=cols, d_depth=d_depth, s_depth=s_depth,
                            c_depth=c_depth, result_logs=result_logs, **extra)
        self.rows, self.cols = rows, cols
        top = Module()
        top.domains.sync = self.sync = ClockDomain("sync")  # so a test can pulse its reset
        top.submodules.dut = self.dut
        self.sim = Simulator(top)
        self.sim.add_clock(1e-8)

    def run(self, body):
        self.sim.add_testbench(body)
        self.sim.run()

    # --- buffer access: backdoor (fast) and through the host ports
    def s_cells(self, a, buffer=0):
        """The memory cells of S word ``a``: one per copy of a core without the select unit
        (every consumer reads its own, ``SwatCore.split_buffers``); on a select core the one
        of S buffer ``buffer`` (sub-banked)."""
        if self.dut.sel_unit is None:
            return [mem.data[a] for mem in self.dut.s_mems]
        mem, row = self.dut.s_buffer.locate(a, buffer)
        return [mem.data[row]]

    def s_cell(self, a, buffer=0):
        """The first memory cell of S word ``a`` (to read it back)."""
        return self.s_cells(a, buffer)[0]

    def preload(self, ctx, d_words, s_words):
        """Write D and S words straight into the memories (every copy)."""
        for a, v in enumerate(d_words):
            for mem in self.dut.d_mems:
                ctx.set(mem.data[a], v)
        for a, v in enumerate(s_words):
            for cell in self.s_cells(a):
                ctx.set(cell, int(v))

    async def write_ports(self, ctx, d_words, s_words):
        dut = self.dut
        for a, v in enumerate(d_words):
            ctx.set(dut.d_write.en, 1), ctx.set(dut.d_write.addr, a), ctx.set(dut.d_write.data, v)
            await ctx.tick()
        ctx.set(dut.d_write.en, 0)
        for a, v in enumerate(s_words):
            ctx.set(dut.s_write.en, 1), ctx.set(dut.s_write.addr, a)
            ctx.set(dut.s_write.data, int(v))
            await ctx.tick()
        ctx.set(dut.s_write.en, 0)

    async def read_c_ports(self, ctx, count):
        """C words 0..count-1 through ``c_read`` (pipelined: one address a cycle, data
        ``C_READ_LATENCY`` cycles later); result logs are gathered by their tags."""
        dut = self.dut
        if dut.result_logs:
            addrs = [j << dut.c_aw | i for j in range(self.cols)
                     for i in range(ctx.get(dut.ctrl.results[j]))]
        else:
            addrs = list(range(count))
        lat, out = dut.C_READ_LATENCY, []
        for t in range(len(addrs) + lat):
            if t < len(addrs):
                ctx.set(dut.c_read.addr, addrs[t])
            if t >= lat:
                out.append(ctx.get(dut.c_read.data))
            await ctx.tick()
        return gather_c(out, self.rows, count) if dut.result_logs else out

    def read_c(self, ctx, count):
        """C words 0..count-1 read from the memories (logs gathered by their tags)."""
        dut = self.dut
        if not dut.result_logs:
            return [ctx.get(dut.c_mem.data[a]) for a in range(count)]
        entries = [ctx.get(mem.data[i]) for j, mem in enumerate(dut.c_logs)
                   for i in range(ctx.get(dut.ctrl.results[j]))]
        return gather_c(entries, self.rows, count)

    async def start(self, ctx, m, k, n, s_len):
        """Set the shape and pulse ``start`` for one cycle (the operation is then running)."""
        ctrl = self.dut.ctrl
        ctx.set(ctrl.m, m), ctx.set(ctrl.k, k), ctx.set(ctrl.n, n), ctx.set(ctrl.s_len, s_len)
        ctx.set(ctrl.start, 1)
        await ctx.tick()
        ctx.set(ctrl.start, 0)
        assert ctx.get(ctrl.busy) == 1 and ctx.get(ctrl.done) == 0

    async def op(self, ctx, m, k, n, s_len, max_cycles=20000):
        """Start one operation, wait for done; returns the status dict."""
        dut = self.dut
        await self.start(ctx, m, k, n, s_len)
        for _ in range(max_cycles):
            if ctx.get(dut.ctrl.done):
                break
            # start is ignored while busy
            await ctx.tick()
        else:
            raise AssertionError(f"core hung: no done within {max_cycles} cycles")
        assert ctx.get(dut.ctrl.busy) == 0
        return {name: ctx.get(getattr(dut.ctrl, name)) for name in
                ("cycles", "busy_cycles", "stall_cycles", "idle_cycles", "error", "error_code")}


def rand_s(rng, k, n, density):
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[s == 0] = 1
    s[rng.random((k, n)) >= density] = 0
    return s


def check_result(tb, ctx, d, s, st, m, n):
    rows, cols = tb.rows, tb.cols
    mt = -(-m // rows)
    c = intref.unpack_c(tb.read_c(ctx, mt * n), m, n, rows)
    np.testing.assert_array_equal(c, intref.gemm(d, s))
    nnz = int((s != 0).sum())
    assert st["error_code"] == 0 and st["error"] == 0
    assert st["busy_cycles"] == mt * nnz
    assert st["busy_cycles"] + st["stall_cycles"] + st["idle_cycles"] == cols * st["cycles"]
    assert st["cycles"] >= mt * nnz / cols


@pytest.mark.parametrize("rows,cols,seed,logs", [
    (1, 1, 0, True), (2, 3, 1, True), (4, 2, 2, True), (4, 4, 3, True), (3, 2, 4, True),
    (2, 3, 5, False), (4, 4, 6, False)])
def test_random_ragged(rows, cols, seed, logs):
    """Several back-to-back operations with random (ragged) shapes and densities, both output
    paths (result logs and the single C port)."""
    rng = np.random.default_rng(seed)
    tb = CoreTB(rows=rows, cols=cols, d_depth=512, s_depth=512, c_depth=128, result_logs=logs)

    async def body(ctx):
        for _ in range(4):
            m = int(rng.integers(1, 3 * rows + 2))
            k = int(rng.integers(1, 24))
            n = int(rng.integers(1, 10))
            dens = float(rng.choice([0.0, 0.05, 0.3, 0.7, 1.0]))
            d = rng.integers(-128, 128, (m, k)).astype(np.int8)
            s = rand_s(rng, k, n, dens)
            w = compress.words(compress.encode(s))
            tb.preload(ctx, intref.pack_d(d, rows), w)
            st = await tb.op(ctx, m, k, n, len(w))
            check_result(tb, ctx, d, s, st, m, n)

    tb.run(body)


@pytest.mark.parametrize("logs", [True, False])
@pytest.mark.parametrize("reset_at", [1, 4, 11, 37])
def test_reset_in_the_middle_of_a_gemm_leaves_nothing_behind(logs, reset_at):
    """The datapath registers (operands, products, accumulators, results, tags, log entries)
    have no reset, for the ECP5's routing: a ``sync`` reset pulsed ``reset_at`` cycles into a
    GEMM must still leave a core whose next GEMM is bit-exact with the cycle count and
    counters of a fresh core's (nothing stale in a PE, an issue stage or a result log). Fails
    when the in-flight valid bits neither reset nor are flushed by ``start``."""
    rng = np.random.default_rng(reset_at)
    rows, cols, depth = 2, 3, 512
    d1 = rng.integers(-128, 128, (7, 40)).astype(np.int8)
    s1 = rand_s(rng, 40, 9, 0.6)
    d2 = rng.integers(-128, 128, (5, 23)).astype(np.int8)
    s2 = rand_s(rng, 23, 7, 0.4)
    w1, w2 = (compress.words(compress.encode(s)) for s in (s1, s2))
    fresh, status = {}, {}

    tb = CoreTB(rows=rows, cols=cols, d_depth=depth, s_depth=depth, c_depth=128,
                result_logs=logs)

    async def fresh_body(ctx):
        tb.preload(ctx, intref.pack_d(d2, rows), w2)
        fresh["st"] = await tb.op(ctx, 5, 23, 7, len(w2))

    tb.run(fresh_body)

    tb = CoreTB(rows=rows, cols=cols, d_depth=depth, s_depth=depth, c_depth=128,
                result_logs=logs)

    async def body(ctx):
        dut = tb.dut
        tb.preload(ctx, intref.pack_d(d1, rows), w1)
        ctrl = dut.ctrl
        await tb.start(ctx, 7, 40, 9, len(w1))
        await ctx.tick().repeat(reset_at)
        assert ctx.get(ctrl.busy) == 1, "the first GEMM ended before the reset"
        ctx.set(tb.sync.rst, 1)
        await ctx.tick()
        ctx.set(tb.sync.rst, 0)
        assert ctx.get(ctrl.busy) == 0 and ctx.get(ctrl.done) == 0
        tb.preload(ctx, intref.pack_d(d2, rows), w2)
        status["st"] = await tb.op(ctx, 5, 23, 7, len(w2))
        check_result(tb, ctx, d2, s2, status["st"], 5, 7)

    tb.run(body)
    assert status["st"] == fresh["st"]
    if logs:
        assert status["st"]["cycles"] == schedule_cycles(s2, 5, rows, cols)


def test_extremes_dense_and_zero():
    """-128/127 operands (largest magnitude products), fully dense S, then all-zero S."""
    tb = CoreTB(rows=4, cols=3)

    async def body(ctx):
        m, k, n = 6, 20, 5
        d = np.full((m, k), -128, dtype=np.int8)
        d[1] = 127
        d[2, ::2] = 127
        s = np.full((k, n), -128, dtype=np.int8)
        s[:, 1] = 127
        s[::3, 2] = 1
        w = compress.words(compress.encode(s))
        tb.preload(ctx, intref.pack_d(d, 4), w)
        st = await tb.op(ctx, m, k, n, len(w))
        check_result(tb, ctx, d, s, st, m, n)
        assert intref.gemm(d, s)[0, 0] == 128 * 128 * k
        # all-zero S: C must be overwritten with zeros
        z = np.zeros((k, n), dtype=np.int8)
        w = compress.words(compress.encode(z))
        tb.preload(ctx, [], w)
        st = await tb.op(ctx, m, k, n, len(w))
        check_result(tb, ctx, d, z, st, m, n)

    tb.run(body)


@pytest.mark.parametrize("logs", [True, False])
def test_host_ports(logs):
    """D/S written and C read through the documented ports (``C_READ_LATENCY`` pipelined)."""
    rng = np.random.default_rng(7)
    tb = CoreTB(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=16, result_logs=logs)
    m, k, n = 3, 9, 4
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, 0.4)
    w = compress.words(compress.encode(s))

    async def body(ctx):
        await tb.write_ports(ctx, intref.pack_d(d, 2), w)
        st = await tb.op(ctx, m, k, n, len(w))
        assert st["error_code"] == 0
        c = intref.unpack_c(await tb.read_c_ports(ctx, 2 * n), m, n, 2)
        np.testing.assert_array_equal(c, intref.gemm(d, s))
        # done stays high until the next start
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(tb.dut.ctrl.done) == 1

    tb.run(body)


@pytest.mark.parametrize("cols", [1, 3, 8])
@pytest.mark.parametrize("s_last", [True, False])
def test_host_writes_up_to_the_cycle_before_start(cols, s_last):
    """Words written through the ports in reverse order (word 0, the blob's magic or the first
    D word, in the cycle before ``start``) are read right: the write register tree
    (``hw.bram.fan_out_writes``) lands them before the first read of each copy."""
    rng = np.random.default_rng(cols)
    tb = CoreTB(rows=2, cols=cols, d_depth=64, s_depth=128, c_depth=32)
    m, k, n = 3, 5, 2 * cols
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, 0.6)
    w = compress.words(compress.encode(s))
    dw = intref.pack_d(d, 2)

    async def write(ctx, port, words):
        for a in reversed(range(len(words))):
            ctx.set(port.en, 1), ctx.set(port.addr, a), ctx.set(port.data, int(words[a]))
            await ctx.tick()
        ctx.set(port.en, 0)

    async def body(ctx):
        first, last = (tb.dut.d_write, dw), (tb.dut.s_write, w)
        if not s_last:
            first, last = last, first
        await write(ctx, *first)
        await write(ctx, *last)
        st = await tb.op(ctx, m, k, n, len(w))
        assert st["error_code"] == 0
        np.testing.assert_array_equal(intref.unpack_c(tb.read_c(ctx, 2 * n), m, n, 2),
                                      intref.gemm(d, s))

    tb.run(body)


def _blob_words(s):
    return [int(x) for x in compress.words(compress.encode(s))]


def test_every_error_code_ends_the_operation():
    """Each case of the shared table (``hw.contract.malformed``) raises one of its codes and
    done; the next good operation is exact."""
    geom = dict(rows=2, d_depth=64, s_depth=64, c_depth=16)
    s = malformed.BASE
    K, N = s.shape
    rng = np.random.default_rng(3)
    m = 3
    d = rng.integers(-128, 128, (m, K)).astype(np.int8)
    tb = CoreTB(cols=2, **geom)
    good = _blob_words(s)
    seen = set()

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, 2), [])
        for case in malformed.cases(m=m, **geom):
            tb.preload(ctx, [], case.words)
            st = await tb.op(ctx, case.m, case.k, case.n, case.s_len, max_cycles=500)
            assert st["error"] == 1 and st["error_code"] in case.codes, (case.name, st)
            seen.add(st["error_code"])
            # a good operation afterwards clears the error and is exact
            tb.preload(ctx, [], good)
            st = await tb.op(ctx, m, K, N, len(good))
            check_result(tb, ctx, d, s, st, m, N)

    tb.run(body)
    assert seen == set(range(1, 9))


def test_s_len_larger_than_buffer():
    tb = CoreTB(rows=2, cols=2, d_depth=64, s_depth=16, c_depth=16)

    async def body(ctx):
        st = await tb.op(ctx, 2, 2, 2, 17, max_cycles=100)
        assert st["error_code"] == 4

    tb.run(body)


def test_start_ignored_while_busy():
    rng = np.random.default_rng(11)
    tb = CoreTB(rows=2, cols=1)
    m, k, n = 4, 16, 3
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, 1.0)
    w = compress.words(compress.encode(s))

    async def body(ctx):
        dut = tb.dut
        tb.preload(ctx, intref.pack_d(d, 2), w)
        ctrl = dut.ctrl
        ctx.set(ctrl.m, m), ctx.set(ctrl.k, k), ctx.set(ctrl.n, n), ctx.set(ctrl.s_len, len(w))
        ctx.set(dut.ctrl.start, 1)
        await ctx.tick()
        # keep start high and change the shape: must be ignored
        ctx.set(dut.ctrl.n, 1)
        for _ in range(10):
            await ctx.tick()
        ctx.set(dut.ctrl.start, 0)
        await ctx.tick().until(dut.ctrl.done)
        c = intref.unpack_c(tb.read_c(ctx, 2 * n), m, n, 2)
        np.testing.assert_array_equal(c, intref.gemm(d, s))

    tb.run(body)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(rows=0), ValueError, "SwatCore: rows must be >= 1, not 0"),
    (dict(cols=0), ValueError, "SwatCore: cols must be >= 1, not 0"),
    (dict(s_depth=4), ValueError, "SwatCore: s_depth must be >= 8, not 4"),
    (dict(c_depth=1), ValueError, "SwatCore: c_depth must be >= 2, not 1"),
    (dict(hold_depth=0), ValueError, "SwatCore: hold_depth must be >= 1, not 0"),
    (dict(sel_lanes=-1), ValueError, "SwatCore: sel_lanes must be >= 0, not -1"),
    (dict(sel_max_banks=0), ValueError, "SwatCore: sel_max_banks must be >= 1, not 0"),
    (dict(sel_clock_gate=True), ValueError,
     "SwatCore: sel_clock_gate needs the select unit (sel_lanes > 0)"),
    (dict(sel_lanes=4, sel_clock_gate=1), TypeError,
     "SwatCore: sel_clock_gate must be a bool, not 1"),
    (dict(sel_lanes=4, gemm_clock_gate=True), ValueError,
     "SwatCore: gemm_clock_gate needs the select unit's own clock (sel_clock_gate=True)"),
    (dict(sel_lanes=4, sel_clock_gate=True, gemm_clock_gate=1), TypeError,
     "SwatCore: gemm_clock_gate must be a bool, not 1"),
    (dict(rows=2.0), TypeError, "SwatCore: rows must be an int, not 2.0"),
    (dict(d_depth="64"), TypeError, "SwatCore: d_depth must be an int, not '64'"),
    (dict(cols=True), TypeError, "SwatCore: cols must be an int, not True"),
])
def test_parameter_validation(kwargs, exc, msg, assert_refused):
    """A refused parameter raises with its message and leaves nothing that warns "created but
    never used" (``hw.params.rejected_unused``)."""
    assert_refused(lambda: SwatCore(**{"rows": 2, "cols": 2, **kwargs}), exc, msg)


def test_flat_port_names():
    """Every name of hw.core_port_names is a top-level port of the converted core."""
    from amaranth.back import rtlil

    from hw.core_port_names import FLAT_NAMES, SELECT_FLAT_NAMES

    text = rtlil.convert(SwatCore(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=16,
                                  sel_lanes=4), name="top")
    top = text[text.index("module \\top"):]
    top = top[:top.index("\nend\n")]
    wires = set(re.findall(r"^  wire width \d+ (?:input|output) \d+ +\\(\S+)$", top, re.M))
    assert set(FLAT_NAMES.values()) | set(SELECT_FLAT_NAMES.values()) <= wires


def test_utilization_sparse():
    """Dynamic work assignment keeps the columns busy on a sparse GEMM (small version)."""
    rng = np.random.default_rng(5)
    m, k, n = 16, 96, 16
    tb = CoreTB(rows=4, cols=4, d_depth=4 * 96, s_depth=1024, c_depth=64)
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, 0.2)
    w = compress.words(compress.encode(s))

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, 4), w)
        st = await tb.op(ctx, m, k, n, len(w))
        check_result(tb, ctx, d, s, st, m, n)
        util = m * int((s != 0).sum()) / (16 * st["cycles"])
        assert util > 0.8, (util, st)
        assert st["cycles"] == schedule_cycles(s, m, 4, 4)

    tb.run(body)


def _select_beats(s_dense, lanes):
    flat = [int(x) for x in s_dense.T.reshape(-1)]
    beats = []
    for b in range(0, len(flat), lanes):
        chunk = flat[b:b + lanes] + [0] * (lanes - len(flat[b:b + lanes]))
        word = sum((v & 0xFF) << (8 * j) for j, v in enumerate(chunk))
        beats.append(word | (int(b + lanes >= len(flat)) << (8 * lanes)))
    return beats


async def _select(ctx, dut, rng, s_dense, keep, bank, p_valid=0.7, mode=None):
    """Mode FULL (or ``mode``: THRESHOLD streams once) on ``s_dense`` into S buffer ``bank``
    through ``sel``; returns ``s_len``."""
    from hw.threshold_select import Mode

    mode = Mode.FULL if mode is None else mode
    k, n = s_dense.shape
    cmd = dut.sel.cmd
    for field, value in ((cmd.payload.mode, mode), (cmd.payload.keep, keep),
                         (cmd.payload.rows, k), (cmd.payload.cols, n),
                         (cmd.payload.bank, bank)):
        ctx.set(field, value)
    ctx.set(cmd.valid, 1)
    while not ctx.get(cmd.ready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(cmd.valid, 0)
    queue = _select_beats(s_dense, dut.sel_lanes) * (1 if mode == Mode.THRESHOLD else 2)
    payload = dut.sel.i.payload.as_value()
    for _ in range(20000):
        if ctx.get(dut.sel.status.done):
            break
        valid = bool(queue) and rng.random() < p_valid
        ctx.set(dut.sel.i.valid, valid)
        if valid:
            ctx.set(payload, queue[0])
        if valid and ctx.get(dut.sel.i.ready):
            queue.pop(0)
        await ctx.tick()
    else:
        raise AssertionError("threshold select hung")
    ctx.set(dut.sel.i.valid, 0)
    assert ctx.get(dut.sel.status.error) == 0 and not queue
    assert ctx.get(dut.sel.status.bank) == bank
    return ctx.get(dut.sel.status.s_len)


async def _gemm_on_units_blob(tb, ctx, d, s_want, s_len):
    """The blob the unit left in S buffer 0 decodes to ``s_want``, and a GEMM reading it is
    exact."""
    (m, k), n = d.shape, s_want.shape[1]
    blob = compress.to_bytes([ctx.get(tb.s_cell(a)) for a in range(s_len)])
    np.testing.assert_array_equal(compress.decode(blob, (k, n)), s_want)
    st = await tb.op(ctx, m, k, n, s_len)
    check_result(tb, ctx, d, s_want, st, m, n)


def _select_core_tb(rows, cols, lanes, **depths):
    return CoreTB(rows=rows, cols=cols, sel_lanes=lanes, **depths)


def test_threshold_select_into_s_buffer():
    """``sel``: a dense S streamed in twice (mode FULL) lands Top-K compressed in S buffer 0;
    the GEMM on it is exact against the integer Top-K reference."""
    from sw import int_topk

    rng = np.random.default_rng(21)
    rows, lanes = 2, 4
    m, k, n = 5, 13, 6
    tb = _select_core_tb(rows, 2, lanes, d_depth=64, s_depth=128, c_depth=32)
    dut = tb.dut
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s_dense = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s_dense[0, :] = 7  # ties at the threshold
    keep = int_topk.k_from_density(0.3, k * n)
    mask = int_topk.select_mask(s_dense.T, keep).T  # stream order: column by column
    s_sel = np.where(mask, s_dense, 0).astype(np.int8)

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), [])
        s_len = await _select(ctx, dut, rng, s_dense, keep, bank=0)
        await _gemm_on_units_blob(tb, ctx, d, s_sel, s_len)

    tb.run(body)


def test_select_writes_lanes_words_a_cycle():
    """The select core's S is sub-banked (``sel_banks`` = lanes): a dense FULL with an
    always-valid producer takes exactly ``select_cycles(..., banks=lanes, kept=...)`` (input-
    bound), far below one write a cycle, and the GEMM on the blob is exact."""
    from hw.contract.cycles import select_cycles

    rng = np.random.default_rng(4)
    rows, lanes = 2, 4
    m, k, n = 4, 16, 12
    tb = _select_core_tb(rows, 2, lanes, d_depth=64, s_depth=256, c_depth=32)
    dut = tb.dut
    assert dut.sel_banks == lanes == dut.s_buffer.sub_banks
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s_dense = rng.integers(1, 128, (k, n)).astype(np.int8)
    keep = k * n

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), [])
        s_len = await _select(ctx, dut, rng, s_dense, keep, bank=0, p_valid=1.0)
        cycles = ctx.get(dut.sel.status.cycles)
        assert cycles == select_cycles(k, n, lanes, banks=lanes, kept=s_dense)
        assert cycles < select_cycles(k, n, lanes, banks=1, nnz=keep) - k * n // 2
        await _gemm_on_units_blob(tb, ctx, d, s_dense, s_len)

    tb.run(body)


def test_select_wider_than_its_sub_banks():
    """A unit with more lanes than S sub-banks (``sel_max_banks``; the harness core: 32 lanes,
    8 sub-banks): a dense FULL queues the beats' entries behind the writer (backpressure, no
    word lost), takes exactly ``select_cycles(..., banks=sel_banks, kept=...)``, and the GEMM
    on the blob is exact."""
    from hw.contract.cycles import select_cycles

    rng = np.random.default_rng(5)
    rows, lanes = 2, 8
    m, k, n = 4, 16, 12
    tb = CoreTB(rows=rows, cols=2, sel_lanes=lanes, sel_max_banks=2, d_depth=64, s_depth=256,
                c_depth=32)
    dut = tb.dut
    assert dut.sel_banks == 2 == dut.s_buffer.sub_banks
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s_dense = rng.integers(1, 128, (k, n)).astype(np.int8)

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), [])
        s_len = await _select(ctx, dut, rng, s_dense, k * n, bank=0, p_valid=1.0)
        cycles = ctx.get(dut.sel.status.cycles)
        assert cycles == select_cycles(k, n, lanes, banks=2, kept=s_dense)
        assert cycles > select_cycles(k, n, lanes, banks=lanes, kept=s_dense)  # write-bound
        await _gemm_on_units_blob(tb, ctx, d, s_dense, s_len)

    tb.run(body)


def _gemm_beside_select(seed):
    """A 2x2 core with a 4-lane unit, a 40x24 ``D`` and a host blob of a 24x8 ``S`` (the GEMM
    that runs while the unit works)."""
    rng = np.random.default_rng(seed)
    tb = _select_core_tb(2, 2, 4, d_depth=512, s_depth=256, c_depth=256)
    d = rng.integers(-128, 128, (40, 24)).astype(np.int8)
    s0 = rand_s(rng, 24, 8, 0.9)
    return rng, tb, d, s0, [int(x) for x in compress.words(compress.encode(s0))]


def test_select_overlaps_gemm_in_other_s_buffer():
    """Double-buffered S: while a GEMM reads buffer 0 the unit fills buffer 1 (no exposed
    cycles); the GEMM on buffer 1 runs while the unit refills buffer 0; a start on the buffer
    the unit is busy with is ignored; every result is exact."""
    from sw import int_topk

    rng, tb, d, s0, w0 = _gemm_beside_select(8)
    dut, rows, (m, k), n = tb.dut, 2, d.shape, s0.shape[1]
    dense = [rng.integers(-128, 128, (k, n)).astype(np.int8) for _ in range(2)]
    keep = int_topk.k_from_density(0.25, k * n)
    sel = [np.where(int_topk.select_mask(x.T, keep).T, x, 0).astype(np.int8) for x in dense]
    state = {}

    async def selector(ctx):
        while not ctx.get(dut.ctrl.busy):  # the GEMM on buffer 0 runs
            await ctx.tick()
        state[1] = await _select(ctx, dut, rng, dense[0], keep, bank=1)
        assert ctx.get(dut.ctrl.busy), "the select should have ended inside the GEMM"
        assert ctx.get(dut.sel.exposed_cycles) == 0
        while "second" not in state:
            await ctx.tick()
        state[0] = await _select(ctx, dut, rng, dense[1], keep, bank=0, p_valid=0.1)

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), w0)
        ctx.set(dut.ctrl.s_bank, 0)
        st = await tb.op(ctx, m, k, n, len(w0))
        check_result(tb, ctx, d, s0, st, m, n)
        while 1 not in state:
            await ctx.tick()
        ctx.set(dut.ctrl.s_bank, 1)
        state["second"] = True
        st = await tb.op(ctx, m, k, n, state[1])
        check_result(tb, ctx, d, sel[0], st, m, n)
        assert 0 not in state  # a slow producer: the unit is still busy on buffer 0 ...
        exposed = ctx.get(dut.sel.exposed_cycles)
        # ... so a start there is ignored
        assert ctx.get(dut.sel.status.busy)
        ctx.set(dut.ctrl.s_bank, 0)
        ctx.set(dut.ctrl.start, 1)
        await ctx.tick()
        ctx.set(dut.ctrl.start, 0)
        assert not ctx.get(dut.ctrl.busy)
        while 0 not in state:
            await ctx.tick()
        assert ctx.get(dut.sel.exposed_cycles) > exposed  # the select ran with no GEMM
        ctx.set(dut.ctrl.s_bank, 0)
        st = await tb.op(ctx, m, k, n, state[0])
        check_result(tb, ctx, d, sel[1], st, m, n)
        state["done"] = True

    tb.sim.add_testbench(selector)
    tb.run(body)
    assert state.get("done")


def test_gemm_starts_on_the_bank_of_a_threshold_pass():
    """A THRESHOLD operation (pass 1) writes no S buffer: a GEMM starts on its ``bank`` while
    it runs (the select loop lets a long pass 1 run on across GEMM boundaries), the GEMM is
    exact with the cycles of a core without the pass, and the pass holds the integer Top-K
    pair."""
    from hw.threshold_select import Mode
    from sw import int_topk

    rng, tb, d, s0, w0 = _gemm_beside_select(12)
    dut, rows, cols, m, k, n = tb.dut, 2, 2, *d.shape, s0.shape[1]
    dense = rng.integers(-128, 128, (30, 20)).astype(np.int8)
    keep = int_topk.k_from_density(0.25, dense.size)
    state = {}

    async def selector(ctx):
        state["len"] = await _select(ctx, dut, rng, dense, keep, bank=0, p_valid=0.05,
                                     mode=Mode.THRESHOLD)
        held = dut.sel.status.held
        state["pair"] = (ctx.get(held.threshold), ctx.get(held.ties))

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), w0)
        while not ctx.get(dut.sel.status.busy):
            await ctx.tick()
        ctx.set(dut.ctrl.s_bank, 0)
        st = await tb.op(ctx, m, k, n, len(w0))
        assert "pair" not in state, "the pass should outlast the GEMM"
        check_result(tb, ctx, d, s0, st, m, n)
        assert st["cycles"] == schedule_cycles(s0, m, rows, cols)
        while "pair" not in state:
            await ctx.tick()
        want = int_topk.threshold_int(dense.T, keep)
        assert state["pair"] == (int(want[0]), int(want[1]))
        state["done"] = True

    tb.sim.add_testbench(selector)
    tb.run(body)
    assert state.get("done")


@pytest.mark.parametrize("m,k,n,dens,rows,cols,skew", [
    (16, 20, 6, 0.3, 2, 2, False),    # few items
    (64, 10, 32, 0.1, 4, 4, False),   # short columns: chunks of several M-tiles
    (32, 8, 16, 0.0, 4, 4, False),    # all empty: zero tokens only
    (200, 5, 7, 0.4, 2, 3, True),     # ragged M, odd cols, skewed column lengths
    (512, 4, 4, 0.5, 2, 2, False),    # many M-tiles: the fit check delays the start
    (24, 60, 9, 0.5, 3, 4, True),     # long skewed columns: the tail
    (6, 12, 40, 0.15, 2, 4, False),   # chunks of 3 M-tiles x 0-3 entries: shorter than the
    (2, 30, 24, 0.05, 2, 8, True),    # slots' WANT_AHEAD (idle cycles), 1-entry chunks
])
def test_cycle_model_is_exact(m, k, n, dens, rows, cols, skew):
    """``hw.contract.cycles.schedule_cycles`` gives the RTL's cycle count exactly, and short
    columns of S retire more than one result per cycle (the result logs)."""
    rng = np.random.default_rng(m + k + n)
    tb = CoreTB(rows=rows, cols=cols, d_depth=4096, s_depth=1024, c_depth=1024)
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, dens)
    if skew:
        s[:, ::3] = rand_s(rng, k, len(range(0, n, 3)), 1.0)
    w = compress.words(compress.encode(s))

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), w)
        st = await tb.op(ctx, m, k, n, len(w))
        check_result(tb, ctx, d, s, st, m, n)
        assert st["cycles"] == schedule_cycles(s, m, rows, cols)

    tb.run(body)


def test_short_columns_retire_several_results_per_cycle():
    """S columns of ~1.6 non-zeros on 4 PE columns: more than one C word per cycle."""
    rng = np.random.default_rng(9)
    m, k, n, rows, cols = 64, 16, 64, 4, 4
    tb = CoreTB(rows=rows, cols=cols, d_depth=1024, s_depth=1024, c_depth=1024)
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rand_s(rng, k, n, 0.1)
    w = compress.words(compress.encode(s))

    async def body(ctx):
        tb.preload(ctx, intref.pack_d(d, rows), w)
        st = await tb.op(ctx, m, k, n, len(w))
        check_result(tb, ctx, d, s, st, m, n)
        assert (m // rows) * n / st["cycles"] > 1.5  # C words per cycle

    tb.run(body)
