"""hw.bram: the register-after-asynchronous-read port behaves as a synchronous read port."""

from amaranth.hdl import Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.bram import BUFFER_ATTRS, read_port


def test_read_port_is_a_synchronous_read_port_with_enable():
    m = Module()
    m.submodules.mem = mem = Memory(shape=8, depth=16, init=[3, 5, 7], attrs=BUFFER_ATTRS)
    wp = mem.write_port()
    rp = read_port(m, mem, "rd")
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def tb(ctx):
        ctx.set(rp.addr, 1)
        await ctx.tick()
        assert ctx.get(rp.data) == 5  # one cycle after the address
        ctx.set(rp.addr, 2)
        ctx.set(rp.en, 0)
        await ctx.tick()
        assert ctx.get(rp.data) == 5  # en low holds the data
        ctx.set(rp.en, 1)
        ctx.set(wp.addr, 2)
        ctx.set(wp.data, 9)
        ctx.set(wp.en, 1)
        await ctx.tick()
        assert ctx.get(rp.data) == 7  # in simulation a same-cycle read gives the old word
        ctx.set(wp.en, 0)
        await ctx.tick()
        assert ctx.get(rp.data) == 9

    sim.add_testbench(tb)
    sim.run()


def test_buffer_attrs_reach_the_rtlil_memory():
    from amaranth.back import rtlil

    m = Module()
    m.submodules.mem = mem = Memory(shape=8, depth=16, init=[], attrs=BUFFER_ATTRS)
    rp = read_port(m, mem, "rd")
    text = rtlil.convert(m, ports=[rp.addr, rp.data, rp.en])
    assert "attribute \\no_rw_check 1\n  memory width 8 size 16" in text
