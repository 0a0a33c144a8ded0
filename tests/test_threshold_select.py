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

from hw.threshold_select import BINS, ErrorCode, Mode, ThresholdSelect, estimate_cycles
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
        self.aw = dut.addr_width

    def beats(self, elements, *, extra=0, drop=0, last_at=None):
        """Pack a flat element sequence into ``(packed payload int)`` beats with ``last``."""
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
            out.append(word)
        if drop:
            out = out[: len(out) - drop]
            if out:
                out[-1] |= 1 << (8 * L)
        return out

    async def op(self, ctx, *, mode, keep=0, rows=1, cols=1, t_in=0, ties_in=0, streams=(),
                 max_cycles=None):
        """Start one operation, feed ``streams`` (lists of beats), collect writes until ``done``.

        Returns ``(writes, cycles_seen, consumed)`` where ``writes`` is a list of (addr, data)
        and ``consumed`` the number of beats the DUT accepted.
        """
        dut = self.dut
        ctx.set(dut.mode, mode)
        ctx.set(dut.keep, keep)
        ctx.set(dut.rows, rows)
        ctx.set(dut.cols, cols)
        ctx.set(dut.t_in, t_in)
        ctx.set(dut.ties_in, ties_in)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        queue = [b for s in streams for b in s]
        pos = 0
        writes = []
        n_cyc = 0
        limit = max_cycles or (20 * len(queue) + 4 * rows * cols + 2000)
        payload = dut.i.payload.as_value()
        out_payload = dut.o.payload.as_value()
        amask = (1 << self.aw) - 1
        while True:
            in_valid = pos < len(queue) and self.rng.random() >= self.in_stall
            ctx.set(dut.i.valid, in_valid)
            if in_valid:
                ctx.set(payload, queue[pos])
            out_ready = self.rng.random() >= self.out_stall
            ctx.set(dut.o.ready, out_ready)
            if ctx.get(dut.done):
                break
            if in_valid and ctx.get(dut.i.ready):
                pos += 1
            if out_ready and ctx.get(dut.o.valid):
                v = ctx.get(out_payload)
                writes.append((v & amask, v >> self.aw))
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
    assert None not in mem, f"blob words never written: {[i for i, w in enumerate(mem) if w is None]}"
    return np.array(mem, dtype=np.uint32)


def expected_words(s, t, ties):
    return np.frombuffer(int_topk.compress_threshold(s, t, ties), dtype="<u4")


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
]


def _keep(spec, n, rng):
    if spec == "n":
        return n
    if spec == "rand":
        return int(rng.integers(0, n + 1))
    return min(spec, n)


def make_bench(lanes, in_stall, out_stall, seed, log):
    dut = ThresholdSelect(lanes=lanes, depth=512)
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
            writes, cyc, used = await tb.op(ctx, mode=Mode.FULL, keep=k, rows=rows, cols=cols,
                                             streams=(st, st))
            assert ctx.get(dut.error_code) == ErrorCode.NONE, (rows, cols, kind, k)
            t, ties = int_topk.threshold_int(s, k)
            assert (ctx.get(dut.threshold), ctx.get(dut.ties)) == (t, ties)
            got = check_blob(writes, s, t, ties)
            assert used == 2 * len(st)
            assert ctx.get(dut.nnz) == got[2]
            assert ctx.get(dut.s_len) == len(got)
            kept = int(int_topk.select_mask(s.T, k).sum())
            assert kept == k
            log.append(("full", lanes, rows, cols, k, cyc))
            # HELD on a perturbed tensor: same (t, ties), rule of sw.int_topk
            s2 = np.clip(s + rng.integers(-2, 3, size=s.shape), -128, 127)
            st2 = tb.beats(int_topk.stream_order(s2))
            writes, cyc, _ = await tb.op(ctx, mode=Mode.HELD, rows=rows, cols=cols,
                                         streams=(st2,))
            assert ctx.get(dut.error_code) == ErrorCode.NONE
            check_blob(writes, s2, t, ties)
            log.append(("held", lanes, rows, cols, k, cyc))

    return dut, bench


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
@pytest.mark.parametrize("stalls", [False, True], ids=["nostall", "stall"])
def test_scenarios(lanes, stalls):
    log = []
    stall = 0.3 if stalls else 0.0
    dut, bench = make_bench(lanes, stall, stall, seed=lanes * 10 + stalls, log=log)
    run_sim(dut, bench)
    assert len(log) == 2 * len(SCENARIOS)
