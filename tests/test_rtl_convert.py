"""sim.rtl_convert: the Verilog of the simulation models without zero memory initialisers is the
text the full conversion gives after sim.verilate.strip_zero_memory_inits."""

import os

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sim import rtl_convert, verilate

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


class TwoMemories(wiring.Component):
    """One memory starting at zero, one with contents; a write port and a read port each."""

    addr: In(4)
    data: In(8)
    we: In(1)
    zero_q: Out(8)
    init_q: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.zero = zero = memory.Memory(shape=8, depth=16, init=[])
        m.submodules.table = table = memory.Memory(shape=8, depth=16, init=range(1, 17))
        for mem, q in ((zero, self.zero_q), (table, self.init_q)):
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(self.addr), w.data.eq(self.data), w.en.eq(self.we),
                         r.addr.eq(self.addr), q.eq(r.data)]
        return m


def _full():
    return verilog.convert(TwoMemories(), name="two", emit_src=False)


def test_same_verilog_as_the_full_conversion_after_the_strip():
    fast = rtl_convert.convert(TwoMemories(), name="two")
    assert verilate.strip_zero_memory_inits(fast) == verilate.strip_zero_memory_inits(_full())
    assert fast == verilate.strip_zero_memory_inits(fast)  # nothing left to strip


def test_non_zero_contents_kept_and_other_conversions_untouched():
    fast = rtl_convert.convert(TwoMemories(), name="two")
    assert "8'h10;" in fast  # the last word of the table (16)
    full = _full()  # outside convert: every memory keeps its initialiser
    assert len(verilate.strip_zero_memory_inits(full)) < len(full)
