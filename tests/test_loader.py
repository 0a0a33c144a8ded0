"""Loader in the Amaranth simulator: every (M-tile, column) item is delivered exactly once with
its entries in order, first/last flags, zero tokens for empty columns; random hold_free
stalls; every error code; never hangs; addresses always in bounds; with the next-item slots
(the default) and with the queue head handed out directly (``slots=False``, the iCE40's)."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from lockstep import lockstep

from hw.contract import malformed
from hw.contract.cycles import START_LATENCY
from hw.dispatcher import Dispatcher
from hw.loader import Loader
from sw import compress, intref


class LoaderDUT(Elaboratable):
    def __init__(self, words, *, rows, cols, d_depth, s_depth, c_depth, slots=True):
        self.loader = Loader(rows=rows, cols=cols, d_depth=d_depth, s_depth=s_depth,
                             c_depth=c_depth, slots=slots)
        self.mem = Memory(shape=32, depth=s_depth, init=[int(w) for w in words])

    def elaborate(self, platform):
        m = Module()
        m.submodules.loader = self.loader
        m.submodules.mem = self.mem
        for p in self.loader.s_rd:
            wiring.connect(m, p, self.mem.read_port())
        return m


class LoaderTB:
    """Starts one operation, collects the tokens of every column, models the hold credit."""

    def __init__(self, words, *, rows=2, cols=3, d_depth=256, s_depth=256, c_depth=128,
                 hold_p=1.0, seed=0, slots=True):
        self.dut = LoaderDUT(words, rows=rows, cols=cols, d_depth=d_depth, s_depth=s_depth,
                             c_depth=c_depth, slots=slots)
        self.cols, self.d_depth, self.c_depth = cols, d_depth, c_depth
        self.hold_p = hold_p
        self.rng = np.random.default_rng(seed)
        self.tokens = [[] for _ in range(cols)]
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)

    def run(self, m, k, n, s_len, max_cycles=5000):
        ld = self.dut.loader
        res = {}

        async def tb(ctx):
            ctx.set(ld.m, m), ctx.set(ld.k, k), ctx.set(ld.n, n), ctx.set(ld.s_len, s_len)
            ctx.set(ld.start, 1)
            await ctx.tick()
            ctx.set(ld.start, 0)
            for cyc in range(max_cycles):  # noqa: B007 (cyc is reported below)
                hf = [bool(self.rng.random() < self.hold_p) for _ in range(self.cols)]
                ctx.set(ld.hold_free, sum(b << j for j, b in enumerate(hf)))
                fin = ctx.get(ld.col_fin)
                for j in range(self.cols):
                    assert not (fin >> j & 1) or hf[j], "last issued without hold credit"
                    o = ld.out[j]
                    if ctx.get(o.valid):
                        t = ctx.get(o.payload)
                        assert t.daddr < self.d_depth and t.caddr < self.c_depth
                        self.tokens[j].append((t.daddr, t.v, t.first, t.last, t.caddr))
                cb, cs, ci = ctx.get(ld.col_busy), ctx.get(ld.col_stall), ctx.get(ld.col_idle)
                assert cb | cs | ci == (1 << self.cols) - 1 and not (cb & cs | cb & ci | cs & ci)
                if not ctx.get(ld.busy):
                    break
                await ctx.tick()
            else:
                raise AssertionError("loader hung")
            res["error_code"] = ctx.get(ld.error_code)
            res["cycles"] = cyc

        self.sim.add_testbench(tb)
        self.sim.run()
        return res

    def items(self):
        """{caddr: [(daddr, v), ...]} with first/last flags checked."""
        items = {}
        for j in range(self.cols):
            cur = None
            for daddr, v, first, last, caddr in self.tokens[j]:
                if first:
                    assert cur is None, f"column {j}: first before last"
                    cur = []
                assert cur is not None, f"column {j}: entry without first"
                cur.append((daddr, v))
                if last:
                    assert caddr not in items, f"item {caddr} delivered twice"
                    items[caddr] = cur
                    cur = None
            assert cur is None
        return items


def expected_items(s, m, rows):
    k, n = s.shape
    exp = {}
    for mt in range(-(-m // rows)):
        for col in range(n):
            nz = np.nonzero(s[:, col])[0]
            exp[mt * n + col] = ([(mt * k + int(r), int(s[r, col])) for r in nz]
                                 or [(mt * k, 0)])  # empty column: one zero token
    return exp


@pytest.mark.parametrize("slots", [True, False])
@pytest.mark.parametrize("seed,cols,hold_p", [(0, 1, 1.0), (1, 3, 1.0), (2, 3, 0.3), (3, 4, 0.6)])
def test_items_delivered_exactly_once(seed, cols, hold_p, slots):
    rng = np.random.default_rng(seed)
    m, k, n, rows = int(rng.integers(1, 9)), int(rng.integers(1, 20)), int(rng.integers(1, 9)), 2
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[rng.random((k, n)) < 0.6] = 0
    s[:, 0] = 0  # at least one empty column
    s[0, -1] = -128
    w = compress.words(compress.encode(s))
    tb = LoaderTB(w, rows=rows, cols=cols, hold_p=hold_p, seed=seed, slots=slots)
    res = tb.run(m, k, n, len(w))
    assert res["error_code"] == 0
    assert tb.items() == expected_items(s, m, rows)


def test_throughput_one_entry_per_cycle_per_column():
    s = np.ones((40, 4), dtype=np.int8)
    w = compress.words(compress.encode(s))
    tb = LoaderTB(w, rows=2, cols=4)
    res = tb.run(2, 40, 4, len(w))
    assert res["error_code"] == 0
    # 4 items of 40 entries on 4 columns + the start latency of the cycle model (the next-item
    # slots' registered hand-out and the dispatcher's stage B2 included) and the 4-cycle entry
    # pipeline, 2 cycles to the bench's end
    assert res["cycles"] == 40 + START_LATENCY[True] + 6


GEOMETRY = dict(rows=2, d_depth=64, s_depth=64, c_depth=16)


@pytest.mark.parametrize("slots", [True, False])
@pytest.mark.parametrize("case", malformed.cases(**GEOMETRY), ids=lambda c: c.name)
def test_error_codes(case, slots):
    """Every case of the shared table (``hw.contract.malformed``) with random hold credit."""
    tb = LoaderTB(case.words, cols=2, hold_p=0.7, slots=slots, **GEOMETRY)
    res = tb.run(case.m, case.k, case.n, case.s_len, max_cycles=300)
    assert res["error_code"] in case.codes


@pytest.mark.parametrize("rows,m,d_tiles,c_tiles", [
    (1, 20, 20, 64), (1, 21, 20, 64), (1, 20, 12, 64), (1, 20, 19, 64), (1, 16, 15, 64),
    (1, 16, 16, 64), (3, 50, 17, 64),
    (3, 49, 17, 64), (3, 52, 18, 17), (2, 16, 8, 8), (2, 17, 8, 64),
])
def test_fit_check_many_tiles(rows, m, d_tiles, c_tiles):
    """The multiplier-free fit check (8 tiles a step, then single tiles) at its boundaries."""
    s = np.array([[0, 3, 0, 1], [-128, 0, 0, 2], [5, 127, 0, 0]], dtype=np.int8)
    k, n = s.shape
    w = compress.words(compress.encode(s))
    d_depth, c_depth = d_tiles * k, c_tiles * n
    tb = LoaderTB(w, rows=rows, cols=2, d_depth=d_depth, c_depth=c_depth)
    res = tb.run(m, k, n, len(w))
    ref = intref.core_model(None, w, m=m, k=k, n=n, rows=rows, d_depth=d_depth,
                            c_depth=c_depth)
    assert ref.error_codes in ({0}, {8})
    assert res["error_code"] in ref.error_codes, (res, ref)
    if res["error_code"] == 0:
        assert tb.items() == expected_items(s, m, rows)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(cols=0), ValueError, "Loader: cols must be >= 1, not 0"),
    (dict(s_depth=7), ValueError, "Loader: s_depth must be >= 8, not 7"),
    (dict(fifo_depth=1), ValueError, "Loader: fifo_depth must be >= 2, not 1"),
    (dict(rows="2"), TypeError, "Loader: rows must be an int, not '2'"),
])
def test_parameter_validation(kwargs, exc, msg, assert_refused):
    args = {**dict(rows=2, cols=2, d_depth=64, s_depth=64, c_depth=16), **kwargs}
    assert_refused(lambda: Loader(**args), exc, msg)


class _RefDispatcher(Dispatcher):
    _flag_decision = False


class _RefLoader(Loader):
    """The hand-out's candidates combinational, the dispatcher's read decision without flags
    (``test_dispatcher._RefDispatcher``)."""
    _dispatcher = _RefDispatcher

    @staticmethod
    def _candidates(m, *, start, pop, want, fill_q, grant, cand, cand_any):
        """``cand`` = ``want_q & ~fill_q & ~sent`` of registers ``want_q`` (the columns'
        ``want`` registered again) and ``sent`` (``fill_q``'s copy), as the loader's docstring
        states it (``hw.loader.Loader._hand_out_to_slots``)."""
        want_q, sent = Signal(len(cand)), Signal(len(cand))
        m.d.sync += [want_q.eq(want), sent.eq(fill_q)]
        m.d.comb += [cand.eq(want_q & ~fill_q & ~sent), cand_any.eq(cand.any())]


def _compare_every_cycle(seed, cols, new_cls=Loader, ops=6):
    """Random operations (shapes, now and then a malformed blob, random hold credit,
    restarts): every output port of the loader equals the reference's in every cycle."""
    rng = np.random.default_rng(seed)
    kw = dict(rows=2, cols=cols, d_depth=256, s_depth=128, c_depth=128)
    outputs = ["busy", "error", "error_code", "col_busy", "col_stall", "col_idle", "col_fin",
               *[f"s_rd.{j}.addr" for j in range(cols + 1)],
               *[f"out.{j}.valid" for j in range(cols)]]
    payloads = [(f"out.{j}.valid", f"out.{j}.payload") for j in range(cols)]
    checked = 0
    for _ in range(ops):
        m_, k, n = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 7))
        s = rng.integers(-128, 128, (k, n)).astype(np.int8)
        s[rng.random((k, n)) < rng.random()] = 0
        w = [int(x) for x in compress.words(compress.encode(s))]
        if rng.random() < 0.25:
            w[int(rng.integers(0, len(w)))] = int(rng.integers(0, 12))
        hold_p = float(rng.choice([1.0, 0.7, 0.3]))

        def drive(cyc, hold_p=hold_p):
            return {"start": cyc == 0 or rng.random() < 0.004,
                    "hold_free": sum(int(rng.random() < hold_p) << j for j in range(cols))}

        checked += lockstep(new_cls(**kw), _RefLoader(**kw), w, kw["s_depth"], cycles=600,
                            constants={"m": m_, "k": k, "n": n, "s_len": len(w)}, drive=drive,
                            outputs=outputs, payloads=payloads)
    return checked


@pytest.mark.parametrize("seed,cols", [(0, 1), (1, 3), (2, 4), (3, 8)])
def test_registered_hand_out_equals_reference_every_cycle(seed, cols):
    """The registered candidates (and the dispatcher's flag decision) against the
    combinational reference: every port every cycle."""
    assert _compare_every_cycle(seed, cols) > 100


def test_every_cycle_compare_can_fail():
    """The comparison sees a hand-out one cycle late (the iCE40's hand-out, no slots)."""

    def no_slots(**kw):
        return Loader(**kw, slots=False)

    with pytest.raises(AssertionError):
        _compare_every_cycle(1, 3, new_cls=no_slots, ops=2)
