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
they were written, for the copies of D and S (below), and for the result logs.

On the ECP5 the register that follows such a read (the consumer's register on ``data``, e.g.
the dispatcher's ``word``) is moved into the DP16KD too, after synthesis: ``bitstreams.bram_outreg``
(run by ``bitstreams.build`` for the ULX3S, ``fold_bram_outreg``) makes it the block RAM's
output register (``REGMODE`` ``OUTREG``, its enable as ``OCE``), so the long ``NOREG``
clock-to-output (5.8 ns at speed grade 6) ends inside the block RAM and the fabric sees
0.96 ns. It folds a register only where that is exact: no reset (``reset_less``), clocked by
``sync``, one enable for the whole word, and the only load of every read bit (nothing in
between, no second consumer); other read ports keep their fabric register (the build log and
``report.json``'s ``bram_outreg`` count them). The iCE40's block RAM has no output register.

The write delay of yosys's bypass is a register stage on the write side, which a buffer whose
writes come from far away needs: without the bypass (RTL of ``ea4e226``, the logs written
straight from the PE column's result register) the ULX3S critical path became a PE column's
result-valid register → 16.6 ns of routing → its log's write enable (57.5 MHz, seed 3); with it
(up to ``2679da4``) the path was a log's block RAM → 6.2 ns → the bypass LUT → ``log_q``. So the
logs now have both: :func:`read_port`, and a write stage of their own in
``hw.result_logs.ResultLogs`` (address, data and enable registers per log).

For the D and S buffers the write delay of yosys's bypass was a register stage on the host's
write bus, which runs from the bridge to every PE column's block-RAM copy; with one memory per
buffer (its copies, one per read port, made by yosys) that delay was one set of registers shared
by all copies, every bypass LUT was placed next to it, and without the bypass (build of
``136eef7``, and branch ``fmax2-bypass``) the one write register fanned out to every copy
became the critical path (14–18 ns of routing). So the core makes one memory per consumer
(``hw.core.SwatCore.split_buffers``), reads each through :func:`read_port` and writes them
through :func:`fan_out_writes`: a binary tree of registers whose leaves each write one copy.
"""

from amaranth.hdl import Signal
from amaranth.lib.memory import Memory, ReadPort
from amaranth.utils import ceil_log2

from .register_copy import RegisterCopy

__all__ = ["BUFFER_ATTRS", "read_port", "fan_out_writes"]

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


def fan_out_writes(m, source, memories, name: str, *, early=()):
    """Write every memory of ``memories`` (copies of one buffer, each read by one consumer)
    from ``source`` (``en``, ``addr``, ``data`` of ``WritePort.Signature``) through a binary
    tree of registers, so that every copy's write register can sit by its block RAM and no
    register drives more than two others.

    The copies are the leaves: a write reaches them at most ``ceil(log2(len(memories)))``
    cycles after ``source`` (at least 1; exactly that many for a power of two). The memories
    of ``early`` (a consumer that reads soon after the host's last write, e.g. the
    dispatcher's header reads one cycle after ``start``) are written from the first register
    of the tree, 1 cycle after ``source``. Returns the latency of ``memories``.

    yosys merges registers with the same input (``opt_merge``; a ``keep`` on the signal does
    not stop it), which would give back one register for all copies. The two children of a
    node therefore differ (``hw.register_copy``): the second keeps the enable inverted (reset
    value 1 = no write) and its address and data registers have the initial value all-ones
    (the first's: 0), which is never seen (the enable qualifies them) but keeps them apart.
    (Nodes of two trees at the same place whose sources are one register, such as the bridge's
    D and S address, are still merged: one register then writes the D and the S copy of a PE
    column.)
    """
    memories, early = list(memories), list(early)
    if not memories:
        raise ValueError("fan_out_writes: no memories")
    aw, shape = len(source.addr), source.data.shape()
    levels = max(1, ceil_log2(len(memories)))

    def node(src_en, src_addr, src_data, leaves, extra, path, second):
        tag = f"{name}_wr{path}"
        # the second's enable kept inverted (reset 1 = no write), its address and data all-ones
        regs = (RegisterCopy(f"{tag}_en", (second, False, int(second))),
                RegisterCopy(f"{tag}_addr", (False, True, int(second)), aw),
                RegisterCopy(f"{tag}_data", (False, True, int(second)), shape))
        m.d.sync += [r.eq(src) for r, src in zip(regs, (src_en, src_addr, src_data), strict=True)]
        en, addr, data = (r.q for r in regs)
        for mem in extra + (leaves if len(leaves) == 1 else []):
            port = mem.write_port()
            m.d.comb += [port.en.eq(en), port.addr.eq(addr), port.data.eq(data)]
        if len(leaves) > 1:
            children(en, addr, data, leaves, [], path)

    def children(en, addr, data, leaves, extra, path):
        half = (len(leaves) + 1) // 2
        node(en, addr, data, leaves[:half], extra, f"{path}0", False)
        node(en, addr, data, leaves[half:], [], f"{path}1", True)

    if len(memories) == 1:
        node(source.en, source.addr, source.data, memories, early, "", False)
    else:
        children(source.en, source.addr, source.data, memories, early, "")
    return levels
