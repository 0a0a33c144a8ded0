"""Block-RAM read ports with nothing between the block RAM and the register it feeds.

A synchronous ``lib.memory`` read port promises, in simulation, the *old* word when a write port
writes the same address in the same cycle. An FPGA block RAM does not promise that across its
two ports, so yosys keeps the promise with a bypass: it delays the write by a register and puts
a 2:1 LUT (old word or bypassed write data) behind every read bit. On the ULX3S build of the
8×8 core that was 2,920 LUTs, one behind every bit of the D, S and result-log read ports, and a
LUT plus one more routed hop on paths that start at a block RAM (5.8 ns clock-to-output at speed
grade 6): the critical path of one build was an S read → 9.3 ns of routing → that LUT.

:func:`read_port` builds the same port from an asynchronous read and a register on its data,
on a memory with ``BUFFER_ATTRS``: yosys folds the register into the block RAM as its read
register and, told by ``no_rw_check`` that a same-cycle read of the written word need not give
the old word, adds no bypass. The behaviour is that of a synchronous read port (data one cycle
after the address; ``en`` low holds the data), and in simulation a same-cycle read still gives
the old word. The core uses it for the single C buffer, whose entries are read only after
they were written.

Not for the result logs: with it (RTL of ``ea4e226``) the bypass's write-delay register went
too, and the ULX3S critical path became a PE column's result-valid register → 16.6 ns of routing
→ its log's write enable (57.5 MHz, seed 3); the logs use plain synchronous ports again. Not for
the D and S buffers either: there the write delay of yosys's bypass is a register stage on the
host's write bus, which runs from the bridge to every PE column's block-RAM copy (yosys merges
the copies' identical delay registers into one set, placed between the bridge and the copies).
Without it (all buffers read through this port) the ULX3S critical path became that bus: the
bridge's address register → 14–18 ns of routing → a D copy's address input (65.8 and 54.2 MHz on
seeds 1 and 2, against 72.7 and 64.4 before).
"""

from amaranth.hdl import Signal
from amaranth.lib.memory import Memory, ReadPort
from amaranth.utils import ceil_log2

__all__ = ["BUFFER_ATTRS", "read_port"]

#: attributes of a memory read through :func:`read_port` (see the module docstring)
BUFFER_ATTRS = {"no_rw_check": 1}


def read_port(m, mem: Memory, name: str):
    """A synchronous read port of ``mem`` (an interface with ``ReadPort.Signature``'s ``addr``,
    ``en`` and ``data``, to be driven like ``mem.read_port()``) made of an asynchronous read
    and a data register in ``sync``. ``name`` prefixes its signals."""
    port = ReadPort.Signature(addr_width=ceil_log2(mem.depth), shape=mem.shape).create(
        path=(name,))
    comb = mem.read_port(domain="comb")
    data = Signal(mem.shape, name=f"{name}_data_q", reset_less=True)  # memory reads no reset
    m.d.comb += [comb.addr.eq(port.addr), port.data.eq(data)]
    with m.If(port.en):
        m.d.sync += data.eq(comb.data)
    return port
