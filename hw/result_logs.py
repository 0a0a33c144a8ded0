"""``ResultLogs``: one C result log per PE column — up to ``cols`` results retired per cycle.

With dynamic work assignment any PE column may finish any work item, and short items finish
several per cycle across the array. Instead of one C buffer behind a ``cols``-to-1 write select
(one result per cycle, and a wide select spread over the die), PE column ``j`` appends each of its
results to *its own* log ``j`` — a memory with one write port fed from the column's result
register through a register stage, no select, no arbitration, no backpressure — together with
the result's C word address (``caddr = mt*N + n``, the tag). ``counts[j]`` says how many entries
log ``j`` holds. The host gathers: ``C[caddr] = lanes`` for every entry
(``hw.contract.words.gather_c``).

Host reads go through one read port whose address is ``bank << ceil_log2(depth) | index``. The
logs sit one per PE column across the die, so instead of one ``cols``-to-1 select of wide
entries (eight 265-bit buses meeting in one place: the long routes that limited the single C
write select) the read path is a chain that only ever connects neighbours: the address moves
from log to log one register stage a cycle, each log's block RAM output goes into a register
next to it, and chain stage ``j`` takes that register when the read is for log ``j``, else
stage ``j - 1``. The data leaves the last stage ``latency(cols) = cols + 2`` cycles after the
address; reads are pipelined (one address a cycle) and ``en`` low freezes the whole path.

Each log's write comes from registers of its own (address, data, enable), so that the PE
column's result register and the log's block RAMs need not sit together; the core reads each
log through ``hw.bram.read_port`` (no read-first bypass: a LUT between the block RAM and
``log_q`` was a ULX3S critical path, ``bitstreams/ulx3s/analysis.md``). A result valid in cycle
``t`` is in its log from cycle ``t + 2`` on; the core's ``done`` rises no earlier (its PE array
is busy while a result is valid, and ``done`` follows the first idle cycle), so nothing has to
wait for the write stage.

Latency: a result is written one cycle after it arrives (valid on ``results[j]``), ``counts``
count it one cycle after it arrives; host read ``cols + 2`` cycles. Throughput: one result per
PE column per cycle; one host read per cycle.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .params import check_int, rejected_unused
from .pe_array import result_layout

__all__ = ["ResultLogs", "log_width", "read_latency"]


def read_latency(cols: int) -> int:
    """Cycles from a host read address to its data: one chain stage per log, plus the block
    RAM and its output register."""
    return cols + 2


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
        Host read of entry ``index`` of log ``bank``; data ``latency`` cycles later.
    counts : Out(ceil_log2(depth) + 1).array(cols) — entries in each log.

    Attributes
    ----------
    latency : int — ``read_latency(cols)``.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int, cols: int, depth: int):
        self.rows = check_int("ResultLogs", "rows", rows, minimum=1)
        self.cols = check_int("ResultLogs", "cols", cols, minimum=1)
        self.depth = check_int("ResultLogs", "depth", depth, minimum=2)
        self.aw = ceil_log2(depth)
        self.bank_w = ceil_log2(cols)
        self.width = log_width(rows, depth)
        self.latency = read_latency(cols)
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
        en = read.en
        # stage j: the read address as log j sees it (j cycles after the port), the log's block
        # RAM output registered next to it, and the chain register
        addr = read.addr
        chain = Const(0, self.width)
        for j in range(self.cols):
            res, wr, rd, count = self.results[j], self.log_write[j], self.log_read[j], \
                self.counts[j]
            # append, through a register stage of the log's own (placed by its block RAM: the
            # PE column's result register is elsewhere): the write lands a cycle after the
            # result, at the earliest edge that can raise the core's ``done``
            wr_en = Signal(name=f"log_wr_en_{j}")
            wr_addr = Signal(aw, name=f"log_wr_addr_{j}", reset_less=True)
            wr_data = Signal(self.width, name=f"log_wr_data_{j}", reset_less=True)
            m.d.comb += res.ready.eq(1)
            m.d.sync += [
                wr_en.eq(res.valid), wr_addr.eq(count[:aw]),
                wr_data.eq(res.payload.c | (res.payload.tag << (rows * 32))),
            ]
            m.d.comb += [wr.en.eq(wr_en), wr.addr.eq(wr_addr), wr.data.eq(wr_data)]
            with m.If(self.start):
                m.d.sync += count.eq(0)
            with m.Elif(res.valid):
                m.d.sync += count.eq(count + 1)
            if j:  # the address one stage further down the chain
                delayed = Signal(len(read.addr), name=f"read_addr_{j}")
                with m.If(en):
                    m.d.sync += delayed.eq(addr)
                addr = delayed
            m.d.comb += [rd.en.eq(en), rd.addr.eq(addr[:aw])]
            # for log j? (delayed twice, as the entry: block RAM, then its output register)
            mine_1 = Signal(name=f"log_mine1_{j}")
            mine = Signal(name=f"log_mine_{j}")
            # the entry registers have no reset (data only: a reset would put 2 * width FFs
            # per log on the reset net); the host reads them ``latency`` cycles after an
            # address, by then they hold the entry
            q = Signal(self.width, name=f"log_q_{j}", reset_less=True)
            link = Signal(self.width, name=f"log_chain_{j}", reset_less=True)
            with m.If(en):
                m.d.sync += [mine_1.eq(addr[aw:] == j if self.bank_w else 1), mine.eq(mine_1),
                             q.eq(rd.data), link.eq(Mux(mine, q, chain))]
            chain = link
        m.d.comb += read.data.eq(chain)
        return m
