"""``ResultLogs``: one C result log per PE column — up to ``cols`` results retired per cycle.

With dynamic work assignment any PE column may finish any work item, and short items finish
several per cycle across the array. Instead of one C buffer behind a ``cols``-to-1 write select
(one result per cycle, and a wide select spread over the die), PE column ``j`` appends each of its
results to *its own* log ``j`` — a memory with one write port fed straight from the column's
result register, no select, no arbitration, no backpressure — together with the result's C word
address (``caddr = mt*N + n``, the tag). ``counts[j]`` says how many entries log ``j`` holds.
The host gathers: ``C[caddr] = lanes`` for every entry (``hw.contract.words.gather_c``).

Host reads go through one read port whose address is ``bank << ceil_log2(depth) | index``; the
bank select is registered on both sides (block RAM → per-log register → select → register), so
the read data comes ``LATENCY = 3`` cycles after the address (while ``en``; ``en`` low freezes
the whole read pipeline).

Latency: a result written the cycle it arrives (valid on ``results[j]``); ``counts`` one cycle
later. Throughput: one result per PE column per cycle.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .params import check_int
from .pe_array import result_layout

__all__ = ["ResultLogs", "log_width"]

#: cycles from the host read address to its data
LATENCY = 3


def log_width(rows: int, depth: int) -> int:
    """Bits of a log entry: ``rows`` int32 lanes, then the C word address."""
    return rows * 32 + ceil_log2(depth)


class ResultLogs(wiring.Component):
    """Per-PE-column result logs and the host read path over them.

    Parameters
    ----------
    rows, cols : int
        PE array (lanes per result, number of logs), >= 1.
    depth : int
        Entries per log (= the C word addresses an operation may use), >= 2.

    Members
    -------
    start : In(1) — empties the logs (``counts`` to 0).
    results : In(stream.Signature(result_layout(rows, ceil_log2(depth)))).array(cols)
        Finished results of each PE column (``ready`` is always 1).
    log_write : In(WritePort.Signature(ceil_log2(depth), log_width)).array(cols)
        Write port of each log memory.
    log_read : In(ReadPort.Signature(ceil_log2(depth), log_width)).array(cols)
        Read port of each log memory (host path).
    read : Out(ReadPort.Signature(ceil_log2(cols) + ceil_log2(depth), log_width))
        Host read of entry ``index`` of log ``bank``; data ``LATENCY`` cycles later.
    counts : Out(ceil_log2(depth) + 1).array(cols) — entries in each log.
    """

    LATENCY = LATENCY

    def __init__(self, *, rows: int, cols: int, depth: int):
        self.rows = check_int("ResultLogs", "rows", rows, minimum=1)
        self.cols = check_int("ResultLogs", "cols", cols, minimum=1)
        self.depth = check_int("ResultLogs", "depth", depth, minimum=2)
        self.aw = ceil_log2(depth)
        self.bank_w = ceil_log2(cols)
        self.width = log_width(rows, depth)
        super().__init__({
            "start": In(1),
            "results": In(stream.Signature(result_layout(rows, self.aw))).array(cols),
            "log_write": In(WritePort.Signature(addr_width=self.aw,
                                                shape=self.width)).array(cols),
            "log_read": In(ReadPort.Signature(addr_width=self.aw,
                                              shape=self.width)).array(cols),
            "read": Out(ReadPort.Signature(addr_width=self.bank_w + self.aw, shape=self.width)),
            "counts": Out(self.aw + 1).array(cols),
        })

    def elaborate(self, platform):
        m = Module()
        rows, aw, read = self.rows, self.aw, self.read
        bank = read.addr[aw:]
        bank_q1 = Signal(max(self.bank_w, 1))
        bank_q2 = Signal(max(self.bank_w, 1))
        selected = Signal(self.width)
        held = []
        for j in range(self.cols):
            res, wr, rd, count = self.results[j], self.log_write[j], self.log_read[j], \
                self.counts[j]
            # append: the result register feeds the write port directly
            m.d.comb += [
                res.ready.eq(1),
                wr.en.eq(res.valid), wr.addr.eq(count[:aw]),
                wr.data.eq(res.payload.c | (res.payload.tag << (rows * 32))),
            ]
            with m.If(self.start):
                m.d.sync += count.eq(0)
            with m.Elif(res.valid):
                m.d.sync += count.eq(count + 1)
            # host read: block RAM output into a register next to the log
            m.d.comb += [rd.en.eq(read.en), rd.addr.eq(read.addr[:aw])]
            q = Signal(self.width, name=f"log_q_{j}")
            with m.If(read.en):
                m.d.sync += q.eq(rd.data)
            held.append(q)
        with m.If(read.en):
            if self.bank_w:
                m.d.sync += [bank_q1.eq(bank), bank_q2.eq(bank_q1)]
            with m.Switch(bank_q2):
                for j, q in enumerate(held):
                    with m.Case(j):
                        m.d.comb += selected.eq(q)
            m.d.sync += read.data.eq(selected)
        return m
