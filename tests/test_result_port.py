"""ResultPort in the Amaranth simulator: results of several PE columns are written one per cycle
(lowest column first) to their C words, and the credits never let a column owe more than
``hold_depth`` results."""

import numpy as np
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.result_port import ResultPort


class _DUT(Elaboratable):
    def __init__(self, rows, cols, depth, hold_depth):
        self.port = ResultPort(rows=rows, cols=cols, depth=depth, hold_depth=hold_depth)
        self.mem = Memory(shape=rows * 32, depth=depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.port, m.submodules.mem = self.port, self.mem
        wiring.connect(m, self.port.c_write, self.mem.write_port())
        return m


def test_results_written_one_per_cycle_lowest_first():
    rows, cols, depth, hold = 2, 3, 16, 2
    rng = np.random.default_rng(0)
    dut = _DUT(rows, cols, depth, hold)
    port = dut.port
    words = [int.from_bytes(rng.bytes(8), "little") for _ in range(depth)]

    async def tb(ctx):
        ctx.set(port.start, 1)
        await ctx.tick()
        ctx.set(port.start, 0)
        pending = [list(range(j, depth, cols)) for j in range(cols)]
        writes_seen = 0
        for _ in range(200):
            for j in range(cols):
                r = port.results[j]
                ctx.set(r.valid, bool(pending[j]))
                if pending[j]:
                    ctx.set(r.payload, {"c": words[pending[j][0]], "tag": pending[j][0]})
            granted = [ctx.get(port.results[j].ready) for j in range(cols)]
            assert sum(granted) <= 1
            first = next((j for j in range(cols) if pending[j]), None)
            if first is not None:
                assert granted[first]
            writes_seen += ctx.get(port.c_write.en)
            await ctx.tick()
            for j in range(cols):
                if granted[j]:
                    pending[j].pop(0)
            if not any(pending) and not ctx.get(port.busy):
                break
        for j in range(cols):
            ctx.set(port.results[j].valid, 0)
        await ctx.tick()
        assert [ctx.get(dut.mem.data[a]) for a in range(depth)] == words

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def test_credits():
    dut = _DUT(1, 2, 4, 2)
    port = dut.port

    async def tb(ctx):
        ctx.set(port.start, 1)
        await ctx.tick()
        ctx.set(port.start, 0)
        ctx.set(port.finishing, 0b01)  # column 0 finishes twice, no result leaves
        assert ctx.get(port.hold_free) == 0b11
        await ctx.tick()
        assert ctx.get(port.hold_free) == 0b11
        await ctx.tick()
        ctx.set(port.finishing, 0)
        assert ctx.get(port.hold_free) == 0b10  # owes 2 = hold_depth
        ctx.set(port.results[0].valid, 1)  # one result leaves: a credit comes back
        await ctx.tick()
        ctx.set(port.results[0].valid, 0)
        assert ctx.get(port.hold_free) == 0b11

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def test_parameters(assert_refused):
    assert_refused(lambda: ResultPort(rows=1, cols=2, depth=1), ValueError,
                   "ResultPort: depth must be >= 2, not 1")
