"""PEArray in the Amaranth simulator: random items with random input gaps and output stalls,
bit-exact int32 sums (including -128 * -128 products), overflow flag on credit violation."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.pe_array import PEArray


class PETB:
    """Testbench: one producer per PE column (credit: hold_depth unfinished results), one
    consumer with random ready."""

    def __init__(self, rows, cols, seed=0, hold_depth=2):
        self.dut = PEArray(rows=rows, cols=cols, tag_width=8, hold_depth=hold_depth)
        self.hold_depth = hold_depth
        self.rows, self.cols = rows, cols
        self.rng = np.random.default_rng(seed)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.owed = [0] * cols
        self.expected = [[] for _ in range(cols)]
        self.got = [[] for _ in range(cols)]

    def make_items(self, count, max_len=6):
        items = []
        for t in range(count):
            n = int(self.rng.integers(1, max_len + 1))
            d = self.rng.integers(-128, 128, (n, self.rows))
            if t % 5 == 0:
                d[:] = -128
            v = self.rng.integers(-128, 128, n)
            if t % 5 == 0:
                v[:] = -128
            items.append((d, v, t & 0xFF))
        return items

    def producer(self, j, items, gap_p):
        async def tb(ctx):
            inp = self.dut.inp[j]
            for d, v, tag in items:
                self.expected[j].append(([int(x) for x in (d * v[:, None]).sum(0)], tag))
                for idx in range(len(v)):
                    last = idx == len(v) - 1
                    while self.rng.random() < gap_p or (last and self.owed[j] >= self.hold_depth):
                        ctx.set(inp.valid, 0)
                        await ctx.tick()
                    word = 0
                    for i in range(self.rows):
                        word |= (int(d[idx, i]) & 0xFF) << (8 * i)
                    ctx.set(inp.valid, 1)
                    ctx.set(inp.payload, {"d": word, "v": int(v[idx]), "first": idx == 0,
                                          "last": last, "tag": tag})
                    if last:
                        self.owed[j] += 1
                    await ctx.tick()
            ctx.set(inp.valid, 0)
        return tb

    def consumer(self, ready_p):
        async def tb(ctx):
            while True:
                readies = [bool(self.rng.random() < ready_p) for _ in range(self.cols)]
                for j in range(self.cols):
                    ctx.set(self.dut.out[j].ready, readies[j])
                taken = []
                for j in range(self.cols):
                    o = self.dut.out[j]
                    if readies[j] and ctx.get(o.valid):
                        c = ctx.get(o.payload.c)
                        lanes = [(c >> (32 * i)) & 0xFFFFFFFF for i in range(self.rows)]
                        lanes = [x - (1 << 32) if x >> 31 else x for x in lanes]
                        taken.append((j, lanes, ctx.get(o.payload.tag)))
                await ctx.tick()
                for j, lanes, tag in taken:
                    self.got[j].append((lanes, tag))
                    self.owed[j] -= 1
        return tb


def _run(rows, cols, seed, gap_p, ready_p, count=12, hold_depth=2):
    tb = PETB(rows, cols, seed, hold_depth)
    for j in range(cols):
        tb.sim.add_testbench(tb.producer(j, tb.make_items(count), gap_p))
    tb.sim.add_testbench(tb.consumer(ready_p), background=True)

    async def finish(ctx):
        for _ in range(count * 40):
            await ctx.tick()
            if all(len(tb.got[j]) == count for j in range(cols)):
                break
        assert not ctx.get(tb.dut.overflow)
        assert not ctx.get(tb.dut.busy)
    tb.sim.add_testbench(finish)
    tb.sim.run()
    for j in range(cols):
        assert tb.got[j] == tb.expected[j], f"column {j}"


def test_back_to_back_always_ready():
    _run(rows=4, cols=2, seed=1, gap_p=0.0, ready_p=1.0)


def test_random_gaps_and_stalls():
    _run(rows=3, cols=3, seed=2, gap_p=0.3, ready_p=0.4)


def test_hold_depth_one_and_three():
    _run(rows=2, cols=2, seed=4, gap_p=0.1, ready_p=0.3, hold_depth=1)
    _run(rows=2, cols=2, seed=5, gap_p=0.0, ready_p=0.2, hold_depth=3)


def test_single_pe():
    _run(rows=1, cols=1, seed=3, gap_p=0.2, ready_p=0.7)


@pytest.mark.parametrize("hold_depth", [1, 2])
def test_overflow_flag_and_clear(hold_depth):
    dut = PEArray(rows=1, cols=1, hold_depth=hold_depth)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        inp = dut.inp[0]
        ctx.set(dut.out[0].ready, 0)
        for t in range(hold_depth + 1):  # single-operand items, results never drained
            if t == hold_depth:
                ctx.set(inp.valid, 0)
                await ctx.tick().repeat(3)
                assert ctx.get(dut.overflow) == 0  # full, not yet overflowing
            ctx.set(inp.valid, 1)
            ctx.set(inp.payload, {"d": 3, "v": 5, "first": 1, "last": 1, "tag": 0})
            await ctx.tick()
        ctx.set(inp.valid, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.overflow) == 1
        assert ctx.get(dut.out[0].valid) == 1
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.overflow) == 0 and ctx.get(dut.busy) == 0

    sim.add_testbench(tb)
    sim.run()


def test_latency_four_cycles():
    dut = PEArray(rows=2, cols=1)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        ctx.set(dut.out[0].ready, 1)
        ctx.set(dut.inp[0].valid, 1)
        ctx.set(dut.inp[0].payload, {"d": 0x02FF, "v": -7, "first": 1, "last": 1, "tag": 9})
        await ctx.tick()
        ctx.set(dut.inp[0].valid, 0)
        for _ in range(3):
            assert ctx.get(dut.out[0].valid) == 0
            await ctx.tick()
        assert ctx.get(dut.out[0].valid) == 1
        c = ctx.get(dut.out[0].payload.c)
        assert c & 0xFFFFFFFF == 7 and (c >> 32) == (-14) & 0xFFFFFFFF
        assert ctx.get(dut.out[0].payload.tag) == 9

    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(rows=0, cols=1), ValueError, "PEArray: rows must be >= 1, not 0"),
    (dict(rows=1, cols=1.5), TypeError, "PEArray: cols must be an int, not 1.5"),
    (dict(rows=1, cols=1, hold_depth=0), ValueError, "PEArray: hold_depth must be >= 1, not 0"),
])
def test_validation(kwargs, exc, msg, assert_refused):
    assert_refused(lambda: PEArray(**kwargs), exc, msg)


class _ECP5:
    """Stands in for an ECP5 platform: all PEArray asks of it is ``family``."""

    family = "ecp5"


def test_ecp5_multipliers_use_the_dsp_registers():
    """On ECP5 every PE's product is one MULT18X18D with its input and output registers in use
    (nextpnr times an inferred multiplier as combinational between fabric registers); the
    generic elaboration (simulation, iCE40) infers the multiply."""
    from amaranth.back import rtlil

    def netlist(platform):
        dut = PEArray(rows=2, cols=3, tag_width=4)  # (a stream's constant ready is no port)
        return rtlil.convert(dut, platform=platform, ports=[dut.clear, dut.busy, dut.overflow])

    text = netlist(_ECP5())
    cells = text.split("\n  cell ")[1:]
    dsps = [c for c in cells if c.startswith("\\MULT18X18D ")]
    assert len(dsps) == 6
    for cell in dsps:
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            assert f'parameter \\REG_{reg}_CLK "CLK0"' in cell
    assert not any(c.startswith("$mul ") for c in cells)
    generic = netlist(None)
    assert "MULT18X18D" not in generic and "$mul " in generic


class _QueueModel:
    """Cycle model of a PE column's ports: the four pipeline stages and the holding queue as a
    list (``hold_depth`` results), the sticky ``overflow``. ``on_overflow``: what a result
    arriving at a full queue does to it — ``"drop"`` (the shift-register queue before the
    circular buffer) or ``"head"`` (the circular buffer: the dropped result's write has gone
    into the head slot)."""

    def __init__(self, rows, hold_depth, on_overflow):
        self.rows, self.hd, self.on_overflow = rows, hold_depth, on_overflow
        self.stages = [None, None, None]  # S0, S1, S2: (d, v, first, last, tag) or None
        self.acc = [0] * rows
        self.queue = []
        self.overflow = 0

    def outputs(self):
        head = self.queue[0] if self.queue else None
        busy = any(s is not None for s in self.stages) or bool(self.queue)
        return head, int(busy), self.overflow

    def step(self, operand, ready, clear):
        pop = bool(self.queue) and ready
        s2 = self.stages[2]
        push = None
        if s2 is not None:
            d, v, first, last, tag = s2
            self.acc = [((0 if first else a) + x * v) & 0xFFFFFFFF
                        for a, x in zip(self.acc, d, strict=True)]
            if last:
                push = (list(self.acc), tag)
        if pop:
            self.queue.pop(0)
        if push is not None:
            if len(self.queue) < self.hd:
                self.queue.append(push)
            else:
                self.overflow = 1
                if self.on_overflow == "head":
                    self.queue[0] = push
        self.stages = [operand, *self.stages[:2]]
        if clear:
            self.stages = [None, None, None]
            self.queue = []
            self.overflow = 0
        return pop


def _run_queue(*, rows, hold_depth, seed, cycles, valid_p, last_p, ready_p, credit, clear_p,
               on_overflow="head"):
    """Random operands (random ``first``/``last``) into one column, random ``out.ready``, and
    random ``clear``; ``out.valid``, the payload of a valid result, ``busy`` and ``overflow``
    compared with :class:`_QueueModel` every cycle. ``credit``: at most ``hold_depth``
    unfinished results, as the core keeps (no overflow); otherwise results pile up."""
    dut = PEArray(rows=rows, cols=1, tag_width=8, hold_depth=hold_depth)
    model = _QueueModel(rows, hold_depth, on_overflow)
    rng = np.random.default_rng(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {"pops": 0, "overflows": 0, "full": 0}

    async def tb(ctx):
        inp, out = dut.inp[0], dut.out[0]
        owed = 0
        for t in range(cycles):
            clear = bool(rng.random() < clear_p)
            operand = None
            if rng.random() < valid_p:
                d = [int(x) for x in rng.integers(-128, 128, rows)]
                if rng.random() < 0.2:
                    d = [-128] * rows
                v = -128 if rng.random() < 0.2 else int(rng.integers(-128, 128))
                last = bool(rng.random() < last_p)
                if last and credit and owed >= hold_depth:
                    last = False
                operand = (d, v, bool(rng.random() < 0.5), last, int(rng.integers(0, 256)))
            ready = bool(rng.random() < ready_p)
            ctx.set(dut.clear, clear)
            ctx.set(out.ready, ready)
            ctx.set(inp.valid, operand is not None)
            if operand is not None:
                d, v, first, last, tag = operand
                word = sum((x & 0xFF) << (8 * i) for i, x in enumerate(d))
                ctx.set(inp.payload, {"d": word, "v": v, "first": first, "last": last,
                                      "tag": tag})
            head, busy, overflow = model.outputs()
            where = f"cycle {t}"
            assert ctx.get(out.valid) == (head is not None), where
            if head is not None:
                c = ctx.get(out.payload.c)
                lanes = [(c >> (32 * i)) & 0xFFFFFFFF for i in range(rows)]
                assert (lanes, ctx.get(out.payload.tag)) == head, where
            assert ctx.get(dut.busy) == busy, where
            assert ctx.get(dut.overflow) == overflow, where
            seen["full"] += len(model.queue) == hold_depth
            if model.step(operand, ready, clear):
                seen["pops"] += 1
                owed -= 1
            if operand is not None and operand[3] and not clear:
                owed += 1
            if clear:
                owed = 0
            seen["overflows"] += model.overflow
            await ctx.tick()

    sim.add_testbench(tb)
    sim.run()
    return seen


@pytest.mark.parametrize("hold_depth", [1, 2, 3])
@pytest.mark.parametrize("valid_p,ready_p", [(1.0, 1.0), (1.0, 0.3), (0.6, 0.6), (0.3, 0.9)])
def test_queue_against_model_with_credit(hold_depth, valid_p, ready_p):
    """As the core drives it (credit, no overflow): every cycle as the model, with and without
    idle inputs and backpressure on ``out.ready``."""
    seen = _run_queue(rows=3, hold_depth=hold_depth, seed=hold_depth * 10 + int(ready_p * 10),
                      cycles=600, valid_p=valid_p, last_p=0.5, ready_p=ready_p, credit=True,
                      clear_p=0.0)
    assert seen["pops"] > 50 and seen["overflows"] == 0
    if ready_p < 0.5:
        assert seen["full"] > 20  # the backpressure filled the queue


@pytest.mark.parametrize("hold_depth", [1, 2, 3])
@pytest.mark.parametrize("ready_p", [0.2, 0.7])
def test_queue_against_model_overflow_and_clear(hold_depth, ready_p):
    """No credit: results arrive at a full queue (overflow, sticky until ``clear``); random
    ``clear``. Every cycle as the model, including the head a dropped result overwrites."""
    seen = _run_queue(rows=2, hold_depth=hold_depth, seed=100 + hold_depth, cycles=800,
                      valid_p=0.8, last_p=0.6, ready_p=ready_p, credit=False, clear_p=0.03)
    assert seen["pops"] > 50 and seen["overflows"] > 20
