"""Dispatcher in the Amaranth simulator: the descriptors of every (M-tile, column) item in order
under random ``ready`` stalls, the header and pointer error codes, and the end of the run."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.contract.codes import LoaderError
from hw.dispatcher import Dispatcher, chunk_tiles
from sw import compress


class _DUT(Elaboratable):
    def __init__(self, words, depth=64, cols=2, bypass=False):
        self.disp = Dispatcher(cols=cols, d_depth=256, s_depth=depth, c_depth=128,
                               bypass=bypass)
        self.mem = Memory(shape=32, depth=depth, init=[int(w) for w in words])

    def elaborate(self, platform):
        m = Module()
        m.submodules.disp, m.submodules.mem = self.disp, self.mem
        wiring.connect(m, self.disp.s_rd, self.mem.read_port())
        return m


def _run(words, *, k, n, mtiles, s_len=None, fit_bad=0, ready_p=1.0, seed=0, cols=2,
         bypass=False):
    """Returns (descriptors, error codes seen, cycles until END)."""
    dut = _DUT(words, cols=cols, bypass=bypass)
    d = dut.disp
    rng = np.random.default_rng(seed)
    got, errors = [], []

    async def tb(ctx):
        ctx.set(d.k, k), ctx.set(d.n, n), ctx.set(d.mtiles, mtiles)
        ctx.set(d.s_len, len(words) if s_len is None else s_len)
        ctx.set(d.fit_bad, fit_bad), ctx.set(d.cols_idle, 1)
        ctx.set(d.start, 1)
        await ctx.tick()
        ctx.set(d.start, 0)
        for cyc in range(500):
            ready = bool(rng.random() < ready_p)
            ctx.set(d.desc.ready, ready)
            if ctx.get(d.desc.valid) and ready:
                p = ctx.get(d.desc.payload)
                got.append((p.entry, p.count, p.d_base, p.c_addr, p.reps))
            code = ctx.get(d.error)
            if code:
                errors.append(code)
                ctx.set(d.stop, 1)
            if ctx.get(d.ended):
                return_cycles.append(cyc)
                return
            await ctx.tick()
        raise AssertionError("dispatcher never ended")

    return_cycles = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, errors, return_cycles[0]


S = np.array([[0, 3, 0, 1], [-128, 0, 0, 2], [5, 127, 0, 0]], dtype=np.int8)
W = [int(x) for x in compress.words(compress.encode(S))]


@pytest.mark.parametrize("bypass", [False, True])
@pytest.mark.parametrize("ready_p,seed,cols,mtiles", [
    (1.0, 0, 1, 3), (0.4, 1, 2, 3), (0.1, 2, 1, 5), (1.0, 3, 4, 19), (0.5, 4, 64, 30)])
def test_descriptors_in_chunk_order(ready_p, seed, cols, mtiles, bypass):
    """Chunks of g = chunk_tiles(nnz, N, cols) M-tiles (fewer in the last group), columns in
    order within a tile group."""
    k, n = S.shape
    g = chunk_tiles(W[2], n, cols)
    assert g == {1: 2, 2: 4, 4: 8, 64: 16}[cols]
    ptr = W[3:4 + n]
    exp = [(4 + n + ptr[c], ptr[c + 1] - ptr[c], t * k, t * n + c, min(g, mtiles - t))
           for t in range(0, mtiles, g) for c in range(n)]
    got, errors, _ = _run(W, k=k, n=n, mtiles=mtiles, ready_p=ready_p, seed=seed, cols=cols,
                          bypass=bypass)
    assert errors == [] and got == exp


def _mutated(index, value):
    w = list(W)
    w[index] = value
    return w


@pytest.mark.parametrize("bypass", [False, True])
@pytest.mark.parametrize("words,s_len,fit_bad,code", [
    (_mutated(0, 0), None, 0, LoaderError.MAGIC),
    (_mutated(1, 3 | 5 << 16), None, 0, LoaderError.SHAPE),
    (W, len(W) - 1, 0, LoaderError.TRUNC),
    (W, 2, 0, LoaderError.TRUNC),
    (_mutated(0, 0), 2, 0, LoaderError.TRUNC),  # s_len first, then magic
    (_mutated(0, 0), None, 1, LoaderError.FIT),  # the fit check first
    (_mutated(3, 1), None, 0, LoaderError.PTR),
    (_mutated(5, 0), None, 0, LoaderError.PTR),
    (_mutated(7, W[7] + 1), None, 0, LoaderError.PTR),
])
def test_errors(words, s_len, fit_bad, code, bypass):
    got, errors, _ = _run(words, k=3, n=4, mtiles=2, s_len=s_len, fit_bad=fit_bad,
                          bypass=bypass)
    assert errors[:1] == [code]
    # no descriptor is formed from a pointer at or after the bad one
    assert all(c >= 0 and e + c <= 4 + 4 + 7 for e, c, _, _, _ in got)
