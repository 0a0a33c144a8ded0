"""``ResultPort``: the single-C-buffer output path (``SwatCore(result_logs=False)``).

Every PE column's finished results wait in the column's holding queue; each cycle the lowest
column with a result is granted (one-hot AND-OR select into a register) and written the next
cycle to C word ``caddr``. One result per cycle in all, so a GEMM whose ``S`` columns hold
fewer than ``cols`` non-zeros on average is bound by this port; :mod:`hw.result_logs` is the
path without that bound. A credit counter per column allows at most ``hold_depth`` unfinished
results (last operand issued, result not yet written), so the holding queue never overflows.

Kept for hosts that read C as one buffer of words ``mt*N + n`` (the UART bridge of the board
tops). Latency: result → written 2 cycles when granted. Throughput: one result per cycle.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .params import check_int, rejected_unused
from .pe_array import result_layout

__all__ = ["ResultPort"]


class ResultPort(wiring.Component):
    """Arbitrated write of all PE columns' results into one C buffer.

    Parameters
    ----------
    rows, cols : int
        PE array, >= 1.
    depth : int
        Words of the C buffer, >= 2.
    hold_depth : int
        Results a PE column may owe (its holding queue depth), >= 1.

    Members
    -------
    start : In(1) — clears the credits.
    results : In(stream.Signature(result_layout(rows, ceil_log2(depth)))).array(cols)
    finishing : In(cols) — column ``j`` issued the last operand of an item this cycle.
    hold_free : Out(cols) — column ``j`` may issue the last operand of an item.
    c_write : In(WritePort.Signature(ceil_log2(depth), rows * 32)) — the C buffer's write port.
    busy : Out(1) — a granted result is not yet written.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int, cols: int, depth: int, hold_depth: int = 2):
        self.rows = check_int("ResultPort", "rows", rows, minimum=1)
        self.cols = check_int("ResultPort", "cols", cols, minimum=1)
        self.depth = check_int("ResultPort", "depth", depth, minimum=2)
        self.hold_depth = check_int("ResultPort", "hold_depth", hold_depth, minimum=1)
        self.aw = ceil_log2(depth)
        super().__init__({
            "start": In(1),
            "results": In(stream.Signature(result_layout(rows, self.aw))).array(cols),
            "finishing": In(cols), "hold_free": Out(cols),
            "c_write": In(WritePort.Signature(addr_width=self.aw, shape=rows * 32)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        taken = Const(0)
        sel_addr, sel_data = Const(0, self.aw), Const(0, self.rows * 32)
        for j in range(self.cols):
            res = self.results[j]
            grant = Signal(name=f"c_grant_{j}")
            m.d.comb += [grant.eq(res.valid & ~taken), res.ready.eq(grant)]
            taken = taken | res.valid
            sel_addr = sel_addr | Mux(grant, res.payload.tag, 0)
            sel_data = sel_data | Mux(grant, res.payload.c, 0)
            # credit: at most hold_depth unfinished results per column
            owed = Signal(range(self.hold_depth + 1), name=f"owed_{j}")
            inc, dec = self.finishing[j], res.valid & res.ready
            with m.If(self.start):
                m.d.sync += owed.eq(0)
            with m.Elif(inc & ~dec):
                m.d.sync += owed.eq(owed + 1)
            with m.Elif(dec & ~inc):
                m.d.sync += owed.eq(owed - 1)
            m.d.comb += self.hold_free[j].eq(owed < self.hold_depth)
        cw = self.c_write
        m.d.sync += [cw.en.eq(taken), cw.addr.eq(sel_addr), cw.data.eq(sel_data)]
        m.d.comb += self.busy.eq(cw.en)
        return m
