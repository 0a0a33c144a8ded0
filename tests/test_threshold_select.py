"""RTL tests of ``hw.threshold_select.ThresholdSelect`` in Amaranth's simulator.

Every scenario is checked word for word against ``sw.int_topk`` (and decoded with
``sw.compress.decode`` when that module exists). Each lane count runs with and without stall
inserters on the input (random ``valid`` gaps) and on the output (random ``ready`` gaps),
verilog-axis style: one :class:`TB` per simulation, many scenarios per simulation to keep the
elaboration cost low.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.select_layouts import BINS, ErrorCode, Mode
from hw.threshold_select import ThresholdSelect, estimate_cycles
from sw import int_topk

try:  # written concurrently; used as an extra cross-check when present
    from sw import compress as sw_compress
except ImportError:  # pragma: no cover
    sw_compress = None


class TB:
    """Drives one :class:`ThresholdSelect` in a testbench coroutine.

    Parameters
    ----------
    dut : ThresholdSelect
    in_stall, out_stall : float
        Probability that the input drops ``valid`` / the output drops ``ready`` in a cycle
        (0 disables the stall inserter).
    seed : int
    """

    def __init__(self, dut, *, in_stall=0.0, out_stall=0.0, seed=0):
        self.dut = dut
        self.in_stall = in_stall
        self.out_stall = out_stall
        self.rng = random.Random(seed)
        self.L = dut.lanes
        layout = dut.out_layout
        self.banks = dut.banks
        self.bank_off = layout["bank"].offset
        self.en_off = layout["en"].offset
        self.addr_off, self.row_w = layout["addr"].offset, layout["addr"].shape.elem_shape.width
        self.data_off = layout["data"].offset

    def decode(self, v):
        """``[(bank, addr, data)]`` of one taken output beat (payload as an int)."""
        out = []
        for b in range(self.banks):
            if v >> (self.en_off + b) & 1:
                row = v >> (self.addr_off + b * self.row_w) & ((1 << self.row_w) - 1)
                word = v >> (self.data_off + 32 * b) & 0xFFFFFFFF
                out.append((v >> self.bank_off & 1, row * self.banks + b, word))
        return out

    def beats(self, elements, *, extra=0, drop=0, last_at=None, index=None):
        """Pack a flat element sequence into ``(packed payload int)`` beats with ``last`` (and
        the flat source indices ``index`` in the side band)."""
        L = self.L
        nbeats = -(-len(elements) // L)
        out = []
        for b in range(nbeats + extra):
            chunk = list(elements[b * L : (b + 1) * L])
            if b >= nbeats:  # extra beats past the end: repeat the tail
                chunk = [self.rng.randint(-128, 127) for _ in range(L)]
            chunk += [self.rng.randint(-128, 127) for _ in range(L - len(chunk))]  # junk lanes
            last = b == (nbeats + extra - 1 if last_at is None else last_at)
            word = 0
            for j, v in enumerate(chunk):
                word |= (int(v) & 0xFF) << (8 * j)
            word |= int(last) << (8 * L)
            if index is not None:
                width = self.dut.index_width
                for j, x in enumerate(index[b * L : (b + 1) * L]):
                    word |= (int(x) & ((1 << width) - 1)) << (8 * L + 1 + width * j)
            out.append(word)
        if drop:
            out = out[: len(out) - drop]
            if out:
                out[-1] |= 1 << (8 * L)
        return out

    async def op(self, ctx, *, mode, keep=0, rows=1, cols=1, t_in=0, ties_in=0, streams=(),
                 transpose=0, cut=None, bank=0, max_cycles=None, by_index=0,
                 cut_index=None):
        """Send one command, feed ``streams`` (lists of beats), collect writes until ``done``.

        Returns ``(writes, cycles_seen, consumed)`` where ``writes`` is a list of (addr, data)
        and ``consumed`` the number of beats the DUT accepted.
        """
        dut = self.dut
        cmd = dut.cmd.payload
        for field, value in ((cmd.mode, mode), (cmd.keep, keep), (cmd.rows, rows),
                             (cmd.cols, cols), (cmd.transpose, transpose), (cmd.bank, bank),
                             (cmd.given.threshold, t_in), (cmd.given.ties, ties_in),
                             (cmd.given.cut_any, cut is not None),
                             (cmd.given.cut_row, cut[0] if cut else 0),
                             (cmd.given.cut_col, cut[1] if cut else 0),
                             (cmd.by_index, by_index), (cmd.given.cut_index, cut_index or 0)):
            ctx.set(field, value)
        if cut_index is not None:
            ctx.set(cmd.given.cut_any, 1)
        ctx.set(dut.cmd.valid, 1)
        assert ctx.get(dut.cmd.ready), "command refused by an idle unit"
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        assert ctx.get(dut.status.busy) and not ctx.get(dut.cmd.ready)
        return await self.run_stream(ctx, streams, rows=rows, cols=cols, bank=bank,
                                     max_cycles=max_cycles)

    async def run_stream(self, ctx, streams, *, rows, cols, bank, max_cycles=None):
        """Feed ``streams`` and collect the writes of the running operation until ``done``."""
        dut = self.dut
        queue = [b for s in streams for b in s]
        pos = 0
        writes = []
        n_cyc = 0
        limit = max_cycles or (20 * len(queue) + 4 * rows * cols + 2000)
        payload = dut.i.payload.as_value()
        out_payload = dut.o.payload.as_value()
        offered = None
        pending = False  # a beat offered and not yet taken stays offered (stream rule)
        while True:
            in_valid = pos < len(queue) and (pending or self.rng.random() >= self.in_stall)
            ctx.set(dut.i.valid, in_valid)
            if in_valid:
                ctx.set(payload, queue[pos])
            out_ready = self.rng.random() >= self.out_stall
            ctx.set(dut.o.ready, out_ready)
            if ctx.get(dut.status.done):
                assert not ctx.get(dut.o.valid), "write offered after done"
                break
            pending = in_valid
            if in_valid and ctx.get(dut.i.ready):
                pos += 1
                pending = False
            o_valid = ctx.get(dut.o.valid)
            if offered is not None:
                assert o_valid and ctx.get(out_payload) == offered, "o dropped/changed a write"
            offered = None
            if o_valid:
                v = ctx.get(out_payload)
                if out_ready:
                    for b, a, d in self.decode(v):
                        assert b == bank, f"write to S buffer {b}, command named {bank}"
                        writes.append((a, d))
                else:
                    offered = v
            await ctx.tick()
            n_cyc += 1
            assert n_cyc < limit, "DUT hung"
        ctx.set(dut.i.valid, 0)
        return writes, n_cyc, pos


def writes_to_words(writes, nwords):
    """Apply writes to a word memory; every address must be written exactly once."""
    mem = [None] * nwords
    for a, d in writes:
        assert a < nwords, f"write to address {a} outside the blob of {nwords} words"
        assert mem[a] is None, f"address {a} written twice"
        mem[a] = d
    missing = [i for i, w in enumerate(mem) if w is None]
    assert not missing, f"blob words never written: {missing}"
    return np.array(mem, dtype=np.uint32)


def expected_words(s, t, ties):
    return np.frombuffer(int_topk.compress_threshold(s, t, ties), dtype="<u4")


def get_cut(ctx, dut):
    return (ctx.get(dut.status.held.cut_row), ctx.get(dut.status.held.cut_col)) \
        if ctx.get(dut.status.held.cut_any) else None


def check_transposed(writes, s, t, ties):
    """Blob of ``s.T`` with the mask the selection on ``s`` keeps."""
    exp = np.frombuffer(int_topk.compress_transposed(s, t, ties), dtype="<u4")
    got = writes_to_words(writes, len(exp))
    np.testing.assert_array_equal(got, exp)
    return got


def check_blob(writes, s, t, ties):
    exp = expected_words(s, t, ties)
    got = writes_to_words(writes, len(exp))
    np.testing.assert_array_equal(got, exp)
    if sw_compress is not None and hasattr(sw_compress, "decode"):
        dec = np.asarray(sw_compress.decode(got.astype("<u4").tobytes(), s.shape))
        keep = int_topk.select_mask_threshold(s.T, t, ties).T
        np.testing.assert_array_equal(dec, np.where(keep, s, 0))
    return got


def run_sim(dut, bench, *, vcd=None):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# ---------------------------------------------------------------------------- scenarios


def tensor(rng, rows, cols, kind):
    if kind == "ties":  # few distinct magnitudes, both signs, zeros
        vals = np.array([0, 3, -3, 7, -7, 7, 100, -100, 0, 0])
        return rng.choice(vals, size=(rows, cols)).astype(np.int64)
    if kind == "zeros":
        return np.zeros((rows, cols), dtype=np.int64)
    if kind == "extreme":
        return rng.choice(np.array([-128, 127, -127, 128 - 256, 1, 0]), size=(rows, cols))
    if kind == "uniform":
        return rng.integers(-128, 128, size=(rows, cols))
    if kind == "const":
        return np.full((rows, cols), -128, dtype=np.int64)
    raise ValueError(kind)


SCENARIOS = [
    # (rows, cols, kind, keep spec)
    (5, 7, "ties", "rand"),
    (5, 7, "ties", 0),
    (5, 7, "ties", "n"),
    (6, 4, "zeros", "rand"),
    (3, 3, "zeros", "n"),
    (4, 5, "extreme", "rand"),
    (1, 9, "extreme", 3),
    (9, 1, "const", 4),
    (13, 3, "uniform", "rand"),
    (2, 11, "ties", 1),
    (24, 10, "uniform", 24),  # density 0.1, bursts of survivors through the record FIFO
    (7, 9, "extreme", "rand"),
]


def _keep(spec, n, rng):
    if spec == "n":
        return n
    if spec == "rand":
        return int(rng.integers(0, n + 1))
    return min(spec, n)


def make_bench(lanes, banks, in_stall, out_stall, seed, log, fifo_depth=16):
    dut = ThresholdSelect(lanes=lanes, depth=512, banks=banks, fifo_depth=fifo_depth)
    tb = TB(dut, in_stall=in_stall, out_stall=out_stall, seed=seed)
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        for rows, cols, kind, spec in SCENARIOS:
            s = tensor(rng, rows, cols, kind)
            n = rows * cols
            k = _keep(spec, n, rng)
            elems = int_topk.stream_order(s)
            st = tb.beats(elems)
            # FULL: histogram pass then replay
            bank = int(rng.integers(0, 2))
            writes, cyc, used = await tb.op(ctx, mode=Mode.FULL, keep=k, rows=rows, cols=cols,
                                             streams=(st, st), bank=bank)
            assert ctx.get(dut.status.bank) == bank
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE, (rows, cols, kind, k)
            t, ties = int_topk.threshold_int(s, k)
            assert (ctx.get(dut.status.held.threshold), ctx.get(dut.status.held.ties)) == (t, ties)
            got = check_blob(writes, s, t, ties)
            assert used == 2 * len(st)
            assert ctx.get(dut.status.nnz) == got[2]
            assert ctx.get(dut.status.s_len) == len(got)
            kept = int(int_topk.select_mask(s.T, k).sum())
            assert kept == k
            log.append(("full", lanes, rows, cols, k, cyc))
            assert get_cut(ctx, dut) == int_topk.last_kept_tie(s, t, ties)
            # the transpose (input-gradient S) with the held cut: the very same mask
            stt = tb.beats(int_topk.stream_order(s.T))
            writes, _, _ = await tb.op(ctx, mode=Mode.HELD, rows=cols, cols=rows, transpose=1,
                                       streams=(stt,))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            check_transposed(writes, s, t, ties)
            assert get_cut(ctx, dut) == int_topk.last_kept_tie(s, t, ties)  # unchanged
            # HELD on a perturbed tensor: same (t, ties), rule of sw.int_topk
            s2 = np.clip(s + rng.integers(-2, 3, size=s.shape), -128, 127)
            st2 = tb.beats(int_topk.stream_order(s2))
            writes, cyc, _ = await tb.op(ctx, mode=Mode.HELD, rows=rows, cols=cols,
                                         streams=(st2,))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            check_blob(writes, s2, t, ties)
            log.append(("held", lanes, rows, cols, k, cyc))
            cut2 = int_topk.last_kept_tie(s2, t, ties)
            assert get_cut(ctx, dut) == cut2
            # GIVEN, transposed, with the pair and cut passed in from outside
            st2t = tb.beats(int_topk.stream_order(s2.T))
            writes, _, _ = await tb.op(ctx, mode=Mode.GIVEN, rows=cols, cols=rows, transpose=1,
                                       t_in=t, ties_in=ties, cut=cut2, streams=(st2t,))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            check_transposed(writes, s2, t, ties)

    return dut, bench


@pytest.mark.parametrize("lanes,banks", [(1, 1), (2, 2), (4, 1), (4, 4), (8, 2), (8, 8)])
@pytest.mark.parametrize("stalls", [False, True], ids=["nostall", "stall"])
def test_scenarios(lanes, banks, stalls):
    log = []
    stall = 0.3 if stalls else 0.0
    # with stalls the record FIFO is minimal so that it fills up and backpressures the input
    dut, bench = make_bench(lanes, banks, stall, stall, seed=lanes * 10 + banks + stalls,
                            log=log, fifo_depth=2 if stalls else 16)
    run_sim(dut, bench)
    assert len(log) == 2 * len(SCENARIOS)


# ---------------------------------------------------------------------------- modes and errors


async def drain_after_error(ctx, tb, queue_left):
    """An errored DUT must accept (and discard) every remaining beat, one per input cycle."""
    dut = tb.dut
    payload = dut.i.payload.as_value()
    for word in queue_left:
        ctx.set(dut.i.valid, 1)
        ctx.set(payload, word)
        assert ctx.get(dut.i.ready), "errored unit does not accept input (producer would hang)"
        assert ctx.get(dut.status.done) and ctx.get(dut.status.error)
        await ctx.tick()
    ctx.set(dut.i.valid, 0)


def make_error_bench(stall, seed, log):
    lanes = 4
    dut = ThresholdSelect(lanes=lanes, depth=96)
    tb = TB(dut, in_stall=stall, out_stall=stall, seed=seed)
    rng = np.random.default_rng(seed)

    async def expect_error(ctx, code, streams, **kw):
        writes, _, used = await tb.op(ctx, streams=streams, **kw)
        assert ctx.get(dut.status.error) == 1
        assert ctx.get(dut.status.error_code) == code, (ctx.get(dut.status.error_code), code)
        assert ctx.get(dut.status.done) == 1 and ctx.get(dut.status.busy) == 0
        queue = [b for s in streams for b in s]
        await drain_after_error(ctx, tb, queue[used:])
        log.append(code)
        return writes

    async def good_full(ctx, rows, cols, k, kind="ties"):
        s = tensor(rng, rows, cols, kind)
        st = tb.beats(int_topk.stream_order(s))
        writes, _, _ = await tb.op(ctx, mode=Mode.FULL, keep=k, rows=rows, cols=cols,
                                   streams=(st, st))
        assert ctx.get(dut.status.error_code) == ErrorCode.NONE
        t, ties = int_topk.threshold_int(s, k)
        check_blob(writes, s, t, ties)
        return s

    async def bench(ctx):
        s = tensor(rng, 6, 5, "ties")
        st = tb.beats(int_topk.stream_order(s))
        # held mode before any threshold exists
        await expect_error(ctx, ErrorCode.NO_THRESHOLD, (st,), mode=Mode.HELD, rows=6, cols=5)
        assert ctx.get(dut.status.held_valid) == 0
        # k > n, zero shapes
        await expect_error(ctx, ErrorCode.KEEP, (st, st), mode=Mode.FULL, keep=31, rows=6, cols=5)
        await expect_error(ctx, ErrorCode.KEEP, (st,), mode=Mode.THRESHOLD, keep=31, rows=6,
                           cols=5)
        await expect_error(ctx, ErrorCode.SHAPE, (st,), mode=Mode.FULL, keep=0, rows=0, cols=5)
        await expect_error(ctx, ErrorCode.SHAPE, (st,), mode=Mode.GIVEN, rows=6, cols=0)
        # given threshold out of range
        await expect_error(ctx, ErrorCode.BAD_THRESHOLD, (st,), mode=Mode.GIVEN, rows=6, cols=5,
                           t_in=129, ties_in=0)
        # stream too short / too long in pass 1: the histogram is left dirty on purpose
        short = tb.beats(int_topk.stream_order(s), drop=2)
        await expect_error(ctx, ErrorCode.SHORT, (short, st), mode=Mode.FULL, keep=7, rows=6,
                           cols=5)
        await good_full(ctx, 6, 5, 12)  # dirty histogram must have been cleared
        long = tb.beats(int_topk.stream_order(s), extra=2)
        await expect_error(ctx, ErrorCode.LONG, (long, st), mode=Mode.FULL, keep=7, rows=6,
                           cols=5)
        await good_full(ctx, 5, 6, 30)
        # too short / too long in pass 2 (the replay)
        await expect_error(ctx, ErrorCode.SHORT, (st, short), mode=Mode.FULL, keep=7, rows=6,
                           cols=5)
        await expect_error(ctx, ErrorCode.LONG, (long,), mode=Mode.HELD, rows=6, cols=5)
        # a last flag on a single-beat stream that should be longer
        one = tb.beats(int_topk.stream_order(s)[:lanes])
        await expect_error(ctx, ErrorCode.SHORT, (one,), mode=Mode.THRESHOLD, keep=1, rows=6,
                           cols=5)
        # blob does not fit depth=96: header+pointers, then entries
        big = rng.integers(1, 128, size=(9, 10))
        bst = tb.beats(int_topk.stream_order(big))
        await expect_error(ctx, ErrorCode.OVERFLOW, (bst,), mode=Mode.GIVEN, rows=1, cols=93)
        writes = await expect_error(ctx, ErrorCode.OVERFLOW, (bst, bst), mode=Mode.FULL, keep=90,
                                    rows=9, cols=10)
        assert all(a < 96 for a, _ in writes)
        # k = 83 fits exactly (4 + 10 + 82 = 96 words, one of the kept is the 83rd): 82 fit
        s_fit = await good_full(ctx, 9, 10, 82, kind="uniform")
        # THRESHOLD then HELD on the same tensor == FULL
        st_fit = tb.beats(int_topk.stream_order(s_fit))
        await tb.op(ctx, mode=Mode.THRESHOLD, keep=40, rows=9, cols=10, streams=(st_fit,))
        assert ctx.get(dut.status.error_code) == ErrorCode.NONE
        t, ties = int_topk.threshold_int(s_fit, 40)
        held = dut.status.held
        assert (ctx.get(held.threshold), ctx.get(held.ties), ctx.get(dut.status.held_valid)) == \
            (t, ties, 1)
        writes, _, _ = await tb.op(ctx, mode=Mode.HELD, rows=9, cols=10, streams=(st_fit,))
        got = check_blob(writes, s_fit, t, ties)
        np.testing.assert_array_equal(
            got, np.frombuffer(int_topk.compress_selected(s_fit, 40), dtype="<u4"))
        # GIVEN: any pair, including more ties than exist and the all-keeping (0, n)
        for t_in, ties_in in [(7, 2), (3, 1000), (0, 90), (128, 0), (128, 5), (50, 0)]:
            writes, _, _ = await tb.op(ctx, mode=Mode.GIVEN, rows=9, cols=10, t_in=t_in,
                                       ties_in=ties_in, streams=(st_fit,))
            assert (ctx.get(held.threshold), ctx.get(held.ties)) == (t_in, ties_in)
            exp = expected_words(s_fit, t_in, ties_in)
            if len(exp) <= 96:
                assert ctx.get(dut.status.error_code) == ErrorCode.NONE
                check_blob(writes, s_fit, t_in, ties_in)
            else:
                assert ctx.get(dut.status.error_code) == ErrorCode.OVERFLOW
        log.append("ok")

    return dut, bench


def make_im2col_bench(lanes, banks, stall, seed, log):
    """The weight-gradient blob ``im2col(int_topk(A))`` of a convolution: FULL on the tensor
    (streamed in its row-major order) reports the cut position, then GIVEN and HELD
    ``by_index`` on the im2col stream with the source indices write it word for word, where the
    tie budget on the same stream would not."""
    import torch

    from sw import lowering

    dut = ThresholdSelect(lanes=lanes, depth=2048, banks=banks, index_width=32)
    tb = TB(dut, in_stall=stall, out_stall=stall, seed=seed)
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        held = dut.status.held
        differs = 0
        for case in range(5):
            a = rng.choice([0, 1, -1, 4, -4, 4, 30], size=(2, 3, 5, 5)).astype(np.int8)
            conv = torch.nn.Conv2d(3, 2, 3, padding=case % 2, stride=1 + (case == 3))
            density = [0.1, 0.3, 0.5, 0.2, 0.25][case]
            k = int_topk.k_from_density(density, a.size)
            t, ties = int_topk.threshold_int(a, k)
            sm = int_topk.stream_matrix(a)
            st = tb.beats(int_topk.stream_order(sm))
            # the pair and cut: FULL (writes the tensor's blob) or THRESHOLD's cut pass
            cut_pass = case % 2
            writes, _, _ = await tb.op(ctx, mode=Mode.THRESHOLD if cut_pass else Mode.FULL,
                                       keep=k, rows=sm.shape[0], cols=sm.shape[1],
                                       by_index=cut_pass, streams=(st, st))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            assert bool(writes) != bool(cut_pass)
            cut_index = int_topk.last_kept_tie_index(a, t, ties)
            assert (ctx.get(held.threshold), ctx.get(held.ties)) == (t, ties)
            assert (ctx.get(held.cut_index) if ctx.get(held.cut_any) else None) == cut_index
            s = lowering.im2col(a, conv).astype(np.int8)
            index = lowering.im2col_source_index(a.shape, conv)
            ist = tb.beats(int_topk.stream_order(s), index=int_topk.stream_order(index))
            expect = lowering.im2col_topk_blob(a, conv, density)
            differs += not np.array_equal(expected_words(s, t, ties), expect)
            for mode in (Mode.GIVEN, Mode.HELD):
                bank = int(rng.integers(0, 2))
                writes, cyc, _ = await tb.op(ctx, mode=mode, rows=s.shape[0], cols=s.shape[1],
                                             t_in=t, ties_in=0, by_index=1, bank=bank,
                                             cut_index=cut_index, streams=(ist,))
                assert ctx.get(dut.status.error_code) == ErrorCode.NONE
                np.testing.assert_array_equal(writes_to_words(writes, len(expect)), expect)
                assert ctx.get(dut.status.s_len) == len(expect)
                # an indexed pass keeps the cut it used
                assert (ctx.get(held.cut_index) if ctx.get(held.cut_any) else None) == cut_index
                log.append((mode, cyc))
        assert differs, "no case had a split tie class: the test would not see the rule"

    return dut, bench


@pytest.mark.parametrize("lanes,banks", [(3, 1), (8, 8)])
@pytest.mark.parametrize("stalls", [False, True], ids=["nostall", "stall"])
def test_im2col_blob_by_index(lanes, banks, stalls):
    log = []
    dut, bench = make_im2col_bench(lanes, banks, 0.3 if stalls else 0.0, lanes + stalls, log)
    run_sim(dut, bench)
    assert len(log) == 10


@pytest.mark.parametrize("stalls", [False, True], ids=["nostall", "stall"])
def test_threshold_cut_pass(stalls):
    """THRESHOLD with ``by_index``: pass 1, then a cut pass over the replayed stream that
    writes nothing (no OVERFLOW however many survive, no S buffer needed) and holds the pair
    and the cut (``cut_row/col`` and ``cut_index``), in the cycles of ``estimate_cycles``; on a
    unit without the side band too."""
    lanes = 4
    dut = ThresholdSelect(lanes=lanes, depth=16)
    tb = TB(dut, in_stall=0.3 if stalls else 0.0, out_stall=0.3 if stalls else 0.0, seed=2)
    rng = np.random.default_rng(11)
    held = dut.status.held
    seen = []

    async def bench(ctx):
        for rows, cols in ((6, 5), (1, 23), (17, 3)):
            s = tensor(rng, rows, cols, "ties")
            k = int(rng.integers(0, rows * cols + 1))
            st = tb.beats(int_topk.stream_order(s))
            writes, cyc, used = await tb.op(ctx, mode=Mode.THRESHOLD, keep=k, rows=rows,
                                            cols=cols, by_index=1, streams=(st, st))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE and not writes
            assert used == 2 * len(st)
            t, ties = int_topk.threshold_int(s, k)
            assert (ctx.get(held.threshold), ctx.get(held.ties)) == (t, ties)
            assert get_cut(ctx, dut) == int_topk.last_kept_tie(s, t, ties)
            flat_cut = int_topk.last_kept_tie_index(np.ascontiguousarray(s.T), t, ties)
            assert (ctx.get(held.cut_index) if ctx.get(held.cut_any) else None) == flat_cut
            if not stalls:
                assert ctx.get(dut.status.cycles) == estimate_cycles(
                    rows, cols, lanes, mode=Mode.THRESHOLD, by_index=True)
            seen.append((rows, cols))

    run_sim(dut, bench)
    assert len(seen) == 3


def test_by_index_needs_the_side_band():
    """``by_index`` on a unit without the side band: NO_INDEX with ``done``, the input is
    drained, and the unit works afterwards."""
    dut = ThresholdSelect(lanes=4, depth=96)
    tb = TB(dut)
    s = tensor(np.random.default_rng(1), 6, 5, "ties")
    st = tb.beats(int_topk.stream_order(s))
    seen = []

    async def bench(ctx):
        for mode in (Mode.GIVEN, Mode.HELD):  # HELD after a good GIVEN: a pair is held
            _, _, used = await tb.op(ctx, mode=mode, rows=6, cols=5, t_in=3, by_index=1,
                                     cut_index=4, streams=(st,))
            assert ctx.get(dut.status.error_code) == ErrorCode.NO_INDEX
            assert ctx.get(dut.status.done) and not ctx.get(dut.status.busy)
            await drain_after_error(ctx, tb, st[used:])
            seen.append(mode)
            writes, _, _ = await tb.op(ctx, mode=Mode.GIVEN, rows=6, cols=5, t_in=3, ties_in=2,
                                       streams=(st,))
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            check_blob(writes, s, 3, 2)

    run_sim(dut, bench)
    assert seen == [Mode.GIVEN, Mode.HELD]


@pytest.mark.parametrize("stalls", [False, True], ids=["nostall", "stall"])
def test_errors_and_modes(stalls):
    log = []
    dut, bench = make_error_bench(0.3 if stalls else 0.0, seed=7 + stalls, log=log)
    run_sim(dut, bench)
    assert log[-1] == "ok"


def test_command_waits_while_busy():
    """A command offered during an operation is held off (``cmd.ready = 0``) until ``done``,
    then taken at once; the first operation's blob and the second's are both right."""
    lanes = 4
    dut = ThresholdSelect(lanes=lanes, depth=256, banks=2)
    tb = TB(dut, out_stall=0.3, seed=5)
    rng = np.random.default_rng(5)
    s1, s2 = rng.integers(-9, 10, (7, 5)), rng.integers(-9, 10, (6, 3))
    seen = []

    async def bench(ctx):
        cmd = dut.cmd.payload
        for field, value in ((cmd.mode, Mode.FULL), (cmd.keep, 12), (cmd.rows, 7),
                             (cmd.cols, 5), (cmd.bank, 1)):
            ctx.set(field, value)
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        for field, value in ((cmd.mode, Mode.FULL), (cmd.keep, 4), (cmd.rows, 6),
                             (cmd.cols, 3), (cmd.bank, 0)):
            ctx.set(field, value)  # the next command, offered right away and kept offered
        beats1 = tb.beats(int_topk.stream_order(s1))
        queue, writes = beats1 + beats1, []
        while True:
            busy = ctx.get(dut.status.busy)
            assert ctx.get(dut.cmd.ready) == (not busy)
            if not busy:
                break
            ctx.set(dut.i.valid, bool(queue))
            if queue:
                ctx.set(dut.i.payload.as_value(), queue[0])
                if ctx.get(dut.i.ready):
                    queue.pop(0)
            ready = tb.rng.random() >= tb.out_stall
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                writes += [(a, d) for _, a, d in tb.decode(ctx.get(dut.o.payload.as_value()))]
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        check_blob(writes, s1, *int_topk.threshold_int(s1, 12))
        await ctx.tick()  # the waiting command is taken at this edge
        ctx.set(dut.cmd.valid, 0)
        assert ctx.get(dut.status.busy) and ctx.get(dut.status.bank) == 0
        st = tb.beats(int_topk.stream_order(s2))
        writes, _, _ = await tb.run_stream(ctx, (st, st), rows=6, cols=3, bank=0)
        check_blob(writes, s2, *int_topk.threshold_int(s2, 4))
        seen.append("ok")

    run_sim(dut, bench)
    assert seen == ["ok"]


class Model:
    """What the unit must do with an arbitrary command and stream: the error code it reports
    and the blob it writes, from ``sw.int_topk`` and the documented checks (in their order)."""

    def __init__(self, lanes, depth):
        self.lanes, self.depth = lanes, depth
        self.held = None  # (t, ties)

    def _length_error(self, beats, nbeats):
        """(index, code) of the first beat whose ``last`` is wrong, or None."""
        for b, (_, last) in enumerate(beats):
            if last != (b == nbeats - 1):
                return b, ErrorCode.LONG if b == nbeats - 1 else ErrorCode.SHORT
        return None

    def run(self, mode, keep, rows, cols, t_in, ties_in, passes):
        """``passes``: list of beat lists ``[(elements, last)]``. Returns (code, blob or None)."""
        n = rows * cols
        selecting = mode in (Mode.FULL, Mode.THRESHOLD)
        if rows == 0 or cols == 0:
            return ErrorCode.SHAPE, None
        if selecting and keep > n:
            return ErrorCode.KEEP, None
        if mode != Mode.THRESHOLD and cols + 4 > self.depth:
            return ErrorCode.OVERFLOW, None
        if mode == Mode.HELD and self.held is None:
            return ErrorCode.NO_THRESHOLD, None
        if mode == Mode.GIVEN and t_in > BINS - 1:
            return ErrorCode.BAD_THRESHOLD, None
        if mode == Mode.GIVEN:
            self.held = (t_in, ties_in)
        nbeats = -(-n // self.lanes)
        streams = list(passes)
        if selecting:
            beats = streams.pop(0)
            bad = self._length_error(beats, nbeats)
            if bad:
                return bad[1], None
            s = np.array([v for e, _ in beats for v in e][:n]).reshape(cols, rows).T
            self.held = int_topk.threshold_int(s, keep)
            if mode == Mode.THRESHOLD:
                return ErrorCode.NONE, None
        beats = streams.pop(0)
        bad = self._length_error(beats, nbeats)
        flat = np.array([v for e, _ in beats[:nbeats] for v in e][:n]) if not bad else None
        if flat is None or len(flat) < n:  # entries up to the bad beat decide an overflow first
            flat = np.array([v for e, _ in beats for v in e])
        t, ties = self.held
        mags = np.abs(flat[:n].astype(np.int64))
        tie = mags == t
        kept = ((mags > t) | (tie & (np.cumsum(tie) <= ties))) & (flat[:n] != 0)
        per_beat = np.cumsum([kept[b * self.lanes:(b + 1) * self.lanes].sum()
                              for b in range(-(-len(kept) // self.lanes))])
        for b in range(len(per_beat)):
            if bad and b == bad[0]:
                return bad[1], None
            if per_beat[b] + cols + 4 > self.depth:
                return ErrorCode.OVERFLOW, None
        if bad:
            return bad[1], None
        s = flat[:n].reshape(cols, rows).T
        return ErrorCode.NONE, np.frombuffer(int_topk.compress_threshold(s, t, ties), "<u4")


def make_fuzz_bench(lanes, banks, depth, stall, seed, log):
    """Random commands with random, often malformed streams: the unit reports what
    :class:`Model` predicts, never hangs, never writes outside the blob or past ``depth``."""
    dut = ThresholdSelect(lanes=lanes, depth=depth, banks=banks, fifo_depth=2)
    tb = TB(dut, in_stall=stall, out_stall=stall, seed=seed)
    rng = np.random.default_rng(seed)
    model = Model(lanes, depth)

    def stream(n, how):
        """Beats ``[(elements, last)]`` of ``n`` random elements, well formed or not."""
        nbeats = max(1, -(-n // lanes))
        count = {"ok": nbeats, "short": max(1, nbeats - 1 - int(rng.integers(0, 2))),
                 "long": nbeats + 1 + int(rng.integers(0, 2))}[how]
        vals = rng.choice([0, 1, -1, 5, -5, 100, -128, 127], size=(count, lanes))
        beats = [(list(map(int, vals[b])), b == count - 1) for b in range(count)]
        if how == "long" and rng.random() < 0.5:  # last where the pass ends, then more
            beats[nbeats - 1] = (beats[nbeats - 1][0], False)
        return beats

    def pack(beats):
        return [sum((v & 0xFF) << (8 * j) for j, v in enumerate(e)) | int(last) << (8 * lanes)
                for e, last in beats]

    async def bench(ctx):
        for _ in range(40):
            mode = Mode(int(rng.integers(0, 4)))
            rows, cols = (int(rng.integers(1, 9)) * (rng.random() > 0.08) for _ in range(2))
            n = rows * cols
            keep = int(rng.integers(0, n + 3))
            t_in = int(rng.integers(0, 129)) if rng.random() > 0.15 else int(rng.integers(129, 256))
            ties_in = int(rng.integers(0, 6))
            npasses = 2 if mode == Mode.FULL else 1
            passes = [stream(n, str(rng.choice(["ok", "ok", "ok", "short", "long"])))
                      for _ in range(npasses)]
            code, blob = model.run(mode, keep, rows, cols, t_in, ties_in, passes)
            writes, _, _ = await tb.op(ctx, mode=mode, keep=keep, rows=rows, cols=cols,
                                       t_in=t_in, ties_in=ties_in,
                                       streams=[pack(p) for p in passes])
            assert ctx.get(dut.status.error_code) == code, (mode, rows, cols, keep, code)
            assert ctx.get(dut.status.done) and not ctx.get(dut.status.busy)
            addrs = [a for a, _ in writes]
            assert len(set(addrs)) == len(addrs) and all(a < depth for a in addrs)
            if blob is not None:
                np.testing.assert_array_equal(writes_to_words(writes, len(blob)), blob)
            if code == ErrorCode.NONE and mode == Mode.THRESHOLD:
                assert not writes
            log.append(code)

    return dut, bench


@pytest.mark.parametrize("lanes,banks,stall", [(4, 2, 0.0), (4, 4, 0.3), (3, 1, 0.3)])
def test_fuzzed_commands_and_streams(lanes, banks, stall):
    log = []
    dut, bench = make_fuzz_bench(lanes, banks, 24, stall, seed=lanes + banks, log=log)
    run_sim(dut, bench)
    assert len(log) == 40 and ErrorCode.NONE in log and len(set(log)) >= 5, log


@pytest.mark.parametrize("lanes,banks,density,rows,cols", [
    (4, 1, 0.2, 48, 6), (8, 1, 0.5, 48, 6), (8, 8, 0.1, 48, 6), (8, 8, 0.6, 48, 6),
    (8, 2, 0.4, 48, 6), (4, 4, 1.0, 48, 6), (8, 8, 1.0, 3, 40), (8, 4, 0.9, 5, 24)])
def test_cycles_match_model(lanes, banks, density, rows, cols):
    """No stalls: FULL, THRESHOLD and HELD take exactly the cycles of ``estimate_cycles`` given
    the kept matrix (``kept``: the writer's work per beat through the FIFO model), and the
    estimate from ``nnz`` alone is within 4 cycles (one bank) or 4 + 3 % (several: the
    survivors of a beat taken as binomial). Short columns (``rows < lanes``) put several column
    ends in a beat."""
    dut = ThresholdSelect(lanes=lanes, depth=512, banks=banks)
    tb = TB(dut)
    rng = np.random.default_rng(lanes + banks)
    s = np.where(rng.random((rows, cols)) < density, rng.integers(1, 128, (rows, cols)), 0)
    k = int((s != 0).sum())
    res = {}

    async def bench(ctx):
        st = tb.beats(int_topk.stream_order(s))
        for mode, streams in ((Mode.FULL, (st, st)), (Mode.THRESHOLD, (st,)), (Mode.HELD, (st,))):
            w, cyc, _ = await tb.op(ctx, mode=mode, keep=k, rows=rows, cols=cols,
                                    streams=streams)
            assert ctx.get(dut.status.error_code) == ErrorCode.NONE
            assert cyc == ctx.get(dut.status.cycles)
            res[mode] = cyc
            if mode == Mode.HELD:
                check_blob(w, s, *int_topk.threshold_int(s, k))

    run_sim(dut, bench)
    for mode, rtl in res.items():
        assert rtl == estimate_cycles(rows, cols, lanes, mode=mode, banks=banks, kept=s), mode
        model = estimate_cycles(rows, cols, lanes, mode=mode, nnz=k, banks=banks)
        slack = 4 if banks == 1 else 4 + model * 3 // 100
        assert abs(rtl - model) <= slack, (mode, rtl, model)


@pytest.mark.parametrize("fifo_depth", [2, 3, 16])
def test_cycles_exact_with_a_full_record_fifo(fifo_depth):
    """A dense, short-column matrix keeps the writer behind the input, so the record FIFO
    fills and throttles the beats: the cycle model with ``kept`` still equals the RTL."""
    lanes, banks, rows, cols = 8, 2, 7, 30
    dut = ThresholdSelect(lanes=lanes, depth=1024, banks=banks, fifo_depth=fifo_depth)
    tb = TB(dut)
    rng = np.random.default_rng(fifo_depth)
    s = np.where(rng.random((rows, cols)) < 0.8, rng.integers(-128, 128, (rows, cols)), 0)
    res = {}

    async def bench(ctx):
        st = tb.beats(int_topk.stream_order(s))
        w, cyc, _ = await tb.op(ctx, mode=Mode.GIVEN, rows=rows, cols=cols, t_in=0,
                                ties_in=1 << 30, streams=(st,))
        check_blob(w, s, 0, 1 << 30)
        res["cycles"] = ctx.get(dut.status.cycles)

    run_sim(dut, bench)
    assert res["cycles"] == estimate_cycles(rows, cols, lanes, mode=Mode.GIVEN, banks=banks,
                                            kept=s, fifo_depth=fifo_depth)


def test_converts_to_verilog():
    """The unit goes through Yosys (builtin) to Verilog, with its ports named as documented."""
    from amaranth.back import verilog

    dut = ThresholdSelect(lanes=2, depth=1024, banks=2)
    text = verilog.convert(dut, name="threshold_select")
    for port in ("i__valid", "i__ready", "i__payload", "cmd__valid", "cmd__ready",
                 "cmd__payload", "o__valid", "o__ready", "o__payload", "status__busy",
                 "status__done", "status__error_code", "status__held", "status__s_len",
                 "status__cycles"):
        assert f" {port};" in text or f" {port} " in text, port


@pytest.mark.parametrize("kwargs,exc,message", [
    ({"lanes": 0}, ValueError, "ThresholdSelect: lanes must be >= 1, not 0"),
    ({"lanes": 2.0}, TypeError, "ThresholdSelect: lanes must be an int, not 2.0"),
    ({"lanes": True}, TypeError, "ThresholdSelect: lanes must be an int, not True"),
    ({"depth": 4}, ValueError, "ThresholdSelect: depth must be >= 5, not 4"),
    ({"depth": "64"}, TypeError, "ThresholdSelect: depth must be an int, not '64'"),
    ({"fifo_depth": 1}, ValueError, "ThresholdSelect: fifo_depth must be >= 2, not 1"),
    ({"banks": 0}, ValueError, "ThresholdSelect: banks must be >= 1, not 0"),
    ({"banks": 3}, ValueError,
     "ThresholdSelect: banks must be a power of two <= max(lanes, 4) = 8, not 3"),
    ({"lanes": 2, "banks": 8}, ValueError,
     "ThresholdSelect: banks must be a power of two <= max(lanes, 4) = 4, not 8"),
    ({"depth": 20, "banks": 8}, ValueError,
     "ThresholdSelect: depth must be a multiple of banks (8), not 20"),
    ({"index_width": 33}, ValueError, "ThresholdSelect: index_width must be <= 32, not 33"),
])
def test_constructor_arguments(kwargs, exc, message, assert_refused):
    """Rejected objects are never elaborated, and do not warn "created but never used" when
    collected (``hw.params.rejected_unused``)."""
    assert_refused(lambda: ThresholdSelect(**kwargs), exc, message)


def measure(rows=576, cols=64, lanes=8, densities=(0.1,), seed=1, banks=1):
    """Cycles of FULL and HELD on a normal-ish int8 ``S[rows, cols]`` (not part of the suite:
    ~20-40 s of CPU per density for 576 x 64). Returns {(mode, density): (rtl, model)}."""
    rng = np.random.default_rng(seed)
    s = np.clip(np.round(rng.normal(0, 30, size=(rows, cols))), -127, 127).astype(np.int64)
    res = {}
    for d in densities:
        dut = ThresholdSelect(lanes=lanes, depth=1 << 16, banks=banks)
        tb = TB(dut)
        k = int_topk.k_from_density(d, rows * cols)

        async def bench(ctx, d=d, k=k, dut=dut, tb=tb):
            st = tb.beats(int_topk.stream_order(s))
            w, _, _ = await tb.op(ctx, mode=Mode.FULL, keep=k, rows=rows, cols=cols,
                                  streams=(st, st))
            got = check_blob(w, s, *int_topk.threshold_int(s, k))
            nnz = int(got[2])
            res[("FULL", d)] = (ctx.get(dut.status.cycles),
                                estimate_cycles(rows, cols, lanes, nnz=nnz, banks=banks))
            await tb.op(ctx, mode=Mode.HELD, rows=rows, cols=cols, streams=(st,))
            res[("HELD", d)] = (ctx.get(dut.status.cycles),
                                estimate_cycles(rows, cols, lanes, mode=Mode.HELD, nnz=nnz,
                                                banks=banks))

        run_sim(dut, bench)
    return res


if __name__ == "__main__":  # python tests/test_threshold_select.py rows cols lanes banks density...
    import sys

    args = sys.argv[1:]
    r, c, ln, bk = (int(a) for a in args[:4]) if len(args) >= 4 else (576, 64, 8, 1)
    ds = tuple(float(a) for a in args[4:]) or (0.1,)
    for key, (rtl, model) in measure(r, c, ln, ds, banks=bk).items():
        print(f"{key[0]:5s} density {key[1]:.2f}: {rtl} cycles (model {model})")


def test_quiet_after_the_settle_and_never_while_working():
    """``quiet`` (what a clock gate of the unit waits for): never while the unit works,
    ``QUIET_SETTLE`` edges after ``done``, after an error only once the histogram's clear
    (``BINS`` cycles behind ERROR) is over, and low again at the edge after a command."""
    from hw.threshold_select import QUIET_SETTLE

    dut = ThresholdSelect(lanes=4, depth=96)
    tb = TB(dut)
    s = tensor(np.random.default_rng(3), 6, 5, "ties")
    st = tb.beats(int_topk.stream_order(s))
    short = tb.beats(int_topk.stream_order(s)[:9])  # `last` on the third beat of 30 elements
    seen, edges = [], [0]

    async def settle(ctx):
        for edge in range(QUIET_SETTLE + 2 * BINS):
            if ctx.get(dut.quiet):
                return edge
            await ctx.tick()
        pytest.fail("the unit never became quiet")

    async def bench(ctx):
        await settle(ctx)
        writes, _, _ = await tb.op(ctx, mode=Mode.FULL, keep=7, rows=6, cols=5,
                                   streams=(st, st))
        check_blob(writes, s, *int_topk.threshold_int(s, 7))
        seen.append(await settle(ctx))
        await tb.op(ctx, mode=Mode.FULL, keep=7, rows=6, cols=5, streams=(short,))
        assert ctx.get(dut.status.error_code) == ErrorCode.SHORT
        seen.append(await settle(ctx))
        ctx.set(dut.cmd.valid, 1)  # offered (refused or not, the next edge is not quiet)
        assert ctx.get(dut.quiet)
        await ctx.tick()
        assert not ctx.get(dut.quiet)

    async def monitor(ctx):  # a working unit is never quiet
        async for _ in ctx.tick():
            edges[0] += 1
            working = ctx.get(dut.status.busy) or ctx.get(dut.o.valid)
            assert not (ctx.get(dut.quiet) and working)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert seen[0] == QUIET_SETTLE and seen[1] > BINS and edges[0] > 2 * BINS
