"""ResultLogs in the Amaranth simulator: results of every PE column arriving in the same cycle
are all kept (``cols`` per cycle), tagged with their C word address, counted per log, emptied by
``start``, and read back through the host port ``cols + 2`` cycles after the address
(pipelined, one address a cycle); a result is in its log memory two cycles after its
``valid`` (the log's write stage), counted one cycle after."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.bram import BUFFER_ATTRS, read_port
from hw.contract.words import gather_c
from hw.result_logs import ResultLogs, log_width, read_latency


class _DUT(Elaboratable):
    def __init__(self, rows, cols, depth):
        self.logs = ResultLogs(rows=rows, cols=cols, depth=depth)
        self.mems = [Memory(shape=log_width(rows, depth), depth=depth, init=[],
                               attrs=BUFFER_ATTRS) for _ in range(cols)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.logs = self.logs
        for j, mem in enumerate(self.mems):
            m.submodules[f"mem_{j}"] = mem
            wiring.connect(m, self.logs.log_write[j], mem.write_port())
            wiring.connect(m, self.logs.log_read[j], read_port(m, mem, f"rd_{j}"))
        return m


@pytest.mark.parametrize("rows,cols,p,seed", [(2, 3, 1.0, 0), (1, 4, 0.5, 1), (3, 1, 0.7, 2)])
def test_every_result_kept_and_read_back(rows, cols, p, seed):
    depth = 32
    rng = np.random.default_rng(seed)
    dut = _DUT(rows, cols, depth)
    logs = dut.logs
    words = [int.from_bytes(rng.bytes(4 * rows), "little") for _ in range(depth)]
    order = list(rng.permutation(depth))
    got = {}

    async def tb(ctx):
        for rnd in range(2):  # a second operation after start: the logs start empty again
            ctx.set(logs.start, 1)
            await ctx.tick()
            ctx.set(logs.start, 0)
            todo = list(order)
            while todo:
                for j in range(cols):
                    r = logs.results[j]
                    valid = bool(todo) and rng.random() < p
                    ctx.set(r.valid, valid)
                    if valid:
                        a = todo.pop()
                        ctx.set(r.payload, {"c": words[a] ^ rnd, "tag": a})
                    assert ctx.get(r.ready)
                await ctx.tick()
            for j in range(cols):
                ctx.set(logs.results[j].valid, 0)
            await ctx.tick()
            counts = [ctx.get(logs.counts[j]) for j in range(cols)]
            assert sum(counts) == depth
            addrs = [j << logs.aw | i for j in range(cols) for i in range(counts[j])]
            entries = []
            lat = read_latency(cols)
            assert logs.latency == lat
            for t in range(len(addrs) + lat):
                if t < len(addrs):
                    ctx.set(logs.read.addr, addrs[t])
                if t >= lat:
                    entries.append(ctx.get(logs.read.data))
                await ctx.tick()
            got[rnd] = gather_c(entries, rows, depth)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got[0] == words and got[1] == [w ^ 1 for w in words]


def test_write_lands_two_cycles_after_the_result():
    """The log write goes through a register stage: a result valid in cycle t is counted from
    t + 1 and in the memory from t + 2 (the core's ``done`` comes no earlier), one write per
    result."""
    dut = _DUT(1, 2, 8)
    logs = dut.logs
    seen = []

    async def tb(ctx):
        ctx.set(logs.start, 1)
        await ctx.tick()
        ctx.set(logs.start, 0)
        r = logs.results[1]
        ctx.set(r.valid, 1), ctx.set(r.payload, {"c": 0x1234_5678, "tag": 5})
        for _ in range(4):
            seen.append((ctx.get(logs.counts[1]), ctx.get(dut.mems[1].data[0])))
            await ctx.tick()
            ctx.set(r.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [(0, 0), (1, 0), (1, 0x1234_5678 | 5 << 32), (1, 0x1234_5678 | 5 << 32)]


def test_parameters(assert_refused):
    assert_refused(lambda: ResultLogs(rows=1, cols=2, depth=1), ValueError,
                   "ResultLogs: depth must be >= 2, not 1")
