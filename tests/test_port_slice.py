"""PortSlice: every member of an interface arrives ``stages`` cycles late, each in its own
direction, array members included; one-bit members keep their reset value."""

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.core_ports import ControlSignature
from hw.port_slice import PortSlice


@pytest.mark.parametrize("stages", [1, 3])
def test_every_member_delayed_in_its_direction(stages):
    dut = PortSlice(ControlSignature(10, logs=3, count_width=5), stages=stages)
    inner, outer = dut.inner, dut.outer
    # (driven side, seen side) per member: In members go outer -> inner, Out inner -> outer
    pairs = [(outer.start, inner.start), (outer.m, inner.m), (outer.s_len, inner.s_len),
             (inner.busy, outer.busy), (inner.done, outer.done),
             (inner.error_code, outer.error_code), (inner.cycles, outer.cycles),
             *((inner.results[j], outer.results[j]) for j in range(3))]
    seen = []

    async def tb(ctx):
        for t in range(8):
            for i, (src, _) in enumerate(pairs):
                ctx.set(src, (t * 7 + i * 3) % (1 << len(src)))
            seen.append([ctx.get(dst) for _, dst in pairs])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for t in range(stages, 8):
        assert seen[t] == [(((t - stages) * 7 + i * 3) % (1 << len(src)))
                           for i, (src, _) in enumerate(pairs)]
    assert seen[0] == [0] * len(pairs)  # reset / initial values


def test_one_bit_members_reset_wide_members_do_not():
    """A reset clears the slice's flags (``done``, ``start``) but leaves its data (counters,
    shape): they are qualified by the flags and copied again the cycle after."""
    m = Module()
    m.domains.sync = sync = ClockDomain()
    m.submodules.slice = dut = PortSlice(ControlSignature(10), stages=1)

    async def tb(ctx):
        ctx.set(dut.inner.done, 1), ctx.set(dut.inner.cycles, 1234)
        ctx.set(dut.outer.start, 1), ctx.set(dut.outer.k, 77)
        await ctx.tick()
        assert [ctx.get(x) for x in (dut.outer.done, dut.outer.cycles, dut.inner.start,
                                     dut.inner.k)] == [1, 1234, 1, 77]
        ctx.set(sync.rst, 1)
        await ctx.tick()
        assert [ctx.get(x) for x in (dut.outer.done, dut.outer.cycles, dut.inner.start,
                                     dut.inner.k)] == [0, 1234, 0, 77]

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def test_parameters(assert_refused):
    assert_refused(lambda: PortSlice(ControlSignature(10), stages=0), ValueError,
                   "PortSlice: stages must be >= 1, not 0")
