"""Compressed-S loader: reads the CSC blob of ``sw.compress`` from the S buffer and feeds the
non-zeros ``(k, v)`` of dynamically assigned work items to the PE columns.

A *work item* is a chunk: output column ``n`` over ``reps`` consecutive M-tiles ``mt …`` of the
whole GEMM (one C word per M-tile), in the order (tile group 0: ``n = 0 … N-1``), (tile group 1:
…); the chunk size adapts to the length of the columns of ``S`` (:mod:`hw.dispatcher`). The
loader is three kinds of parts:

* :class:`~hw.fit_check.FitCheck` — does the shape fit the D and C buffers (error 8);
* :class:`~hw.dispatcher.Dispatcher` (one S read port) — header checks (1, 2, 4), then one
  column pointer per cycle, checked (3), into a FIFO of item descriptors, prefetched while the
  current items stream;
* :class:`~hw.column_issue.ColumnIssue`, one per PE column (one S read port each) — one entry
  read per cycle, checked (5, 6, 7), out as a token with its D address ``mt*K + k``.

The loader itself registers the shape, hands the FIFO head out to the PE columns (a column
takes its next item in the cycle it issues the last entry of its current one, so item switches
cost no cycle and short columns simply take more items; only the end of the GEMM has a tail),
keeps the first error found (sticky ``error_code``; the lowest entry code of any column in a
cycle wins over a pointer error) and reports per-column status.

The hand-out (``slots``, on everywhere but the iCE40) is decided from registers one item ahead:
each PE column has a registered next-item slot and asks for a descriptor (``want``, a register)
when the slot is empty and its current item has at most
:data:`~hw.column_issue.WANT_AHEAD` issue cycles left; the loader registers the ``want`` flags,
gives the head to the lowest column among them (one per cycle), and writes it into that
column's slot through a register stage (``fill_q``, ``item_q``). Every net between the loader
and a column is registered at both ends and the choice is made over the loader's own
registers, so no path runs from one column's issue logic to another's registers (the chain of
the lowest wanting column through all columns in one cycle, ``slots=False``, was the ULX3S
critical path: 5–6 LUT levels and 13–14 ns of routing between columns spread over the die).
A column asks ``WANT_AHEAD`` cycles before its item ends, so the slot fills just in time and
the columns are handed items in the order they finish them, as with the chain; an operation
starts 1 cycle later (2 through the registers, 1 won back by the dispatcher's FIFO bypass), and
an item shorter than ``WANT_AHEAD - 1`` cycles leaves its column idle for the rest
(``hw.contract.cycles`` counts both).

After an error all issuing stops, entries already checked drain and ``busy`` falls: the
operation never hangs and never produces an address out of bounds (only checked pointers make
descriptors, so every entry read lies in ``[4+N, 4+N+nnz) ⊆ [0, s_len)``).

Latency: start → first entry read: about ``max(6, ceil(M/rows)/8 + 9)`` (header, fit) + 4
(first pointers) + 2 cycles (+ 3 with ``slots``: the registered hand-out and the dispatcher's
stage B2, one cycle for the header and one for the pointers); entry read → token 4 cycles.
Throughput: one entry per cycle per PE column; one descriptor per cycle from the dispatcher.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .column_issue import ColumnIssue, token_layout
from .contract.blob import MAGIC
from .contract.codes import LoaderError
from .dispatcher import Dispatcher
from .fit_check import FitCheck
from .params import check_int, rejected_unused

__all__ = ["Loader", "token_layout", "MAGIC", "LoaderError"]


class Loader(wiring.Component):
    """Compressed-S loader and dynamic work dispatcher.

    Parameters
    ----------
    rows : int
        PE rows (M-tile height), >= 1.
    cols : int
        PE columns (number of ``out`` streams and of entry read ports), >= 1.
    d_depth, s_depth, c_depth : int
        Words of the D, S and C buffers (>= 2, ``s_depth >= 8``; used for address widths and the
        fit check).
    fifo_depth : int
        Descriptor prefetch FIFO depth (>= 2).
    slots : bool
        True (default): each PE column has a registered next-item slot, filled from the FIFO
        head by a hand-out decided from registers (see the module docstring). False: the FIFO
        head goes to the lowest column that wants an item in the cycle it wants it (fewer
        cells: the iCE40).

    Members
    -------
    start : In(1) — pulse: samples ``m``, ``k``, ``n``, ``s_len``, clears the error, begins.
    m, k, n : In(16); s_len : In(ceil_log2(s_depth) + 1)
    s_rd : In(ReadPort.Signature(addr_width=ceil_log2(s_depth), shape=32)).array(cols + 1)
        S buffer read ports (sync, latency 1); ``s_rd[cols]`` is the dispatcher's.
    out : Out(stream.Signature(token_layout, always_ready=True)).array(cols)
    hold_free : In(cols) — column ``j`` may issue the last entry / zero token of an item.
    busy : Out(1) — the operation is running or entries are in flight.
    error : Out(1); error_code : Out(4) — sticky until the next ``start``.
    col_busy, col_stall, col_idle : Out(cols) — per column, this cycle: issuing an entry;
        work pending but not issuing (also during the header); no work left.
    col_fin : Out(cols) — column issued the last entry (or zero token) of one M-tile's pass
        (one result) this cycle.

    Latency / throughput: see the module docstring.
    """

    #: the dispatcher class (the tests' reference loader takes a reference dispatcher)
    _dispatcher = Dispatcher

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, rows: int, cols: int, d_depth: int, s_depth: int, c_depth: int,
                 fifo_depth: int = 6, slots: bool = True):
        self.slots = bool(slots)
        self.rows = check_int("Loader", "rows", rows, minimum=1)
        self.cols = check_int("Loader", "cols", cols, minimum=1)
        self.d_depth = check_int("Loader", "d_depth", d_depth, minimum=2)
        self.s_depth = check_int("Loader", "s_depth", s_depth, minimum=8)
        self.c_depth = check_int("Loader", "c_depth", c_depth, minimum=2)
        self.fifo_depth = check_int("Loader", "fifo_depth", fifo_depth, minimum=2)
        self.d_aw, self.s_aw, self.c_aw = ceil_log2(d_depth), ceil_log2(s_depth), ceil_log2(c_depth)
        super().__init__({
            "start": In(1),
            "m": In(16), "k": In(16), "n": In(16),
            "s_len": In(self.s_aw + 1),
            "s_rd": In(ReadPort.Signature(addr_width=self.s_aw, shape=32)).array(cols + 1),
            "out": Out(stream.Signature(token_layout(self.d_aw, self.c_aw),
                                        always_ready=True)).array(cols),
            "hold_free": In(cols),
            "busy": Out(1),
            "error": Out(1),
            "error_code": Out(4),
            "col_busy": Out(cols), "col_stall": Out(cols), "col_idle": Out(cols),
            "col_fin": Out(cols),
        })

    def elaborate(self, platform):
        m = Module()
        cols, start = self.cols, self.start
        depths = dict(d_depth=self.d_depth, s_depth=self.s_depth, c_depth=self.c_depth)

        # ---- the operation's shape, registered at start
        k = Signal(16)
        n = Signal(16)
        s_len = Signal(self.s_aw + 1)
        with m.If(start):
            m.d.sync += [k.eq(self.k), n.eq(self.n), s_len.eq(self.s_len)]

        # ---- sticky error: the first one found is kept
        error_code = Signal(4)
        found = Signal(4)  # an error found this cycle (0: none)
        stop = Signal()
        # stop = (error_code != 0) as a register of its own: keeps the checks and the code's
        # OR off the issue path
        m.d.comb += [self.error.eq(stop), self.error_code.eq(error_code)]
        with m.If(start):
            m.d.sync += [error_code.eq(0), stop.eq(0)]
        with m.Elif(~stop & (found != 0)):
            m.d.sync += [error_code.eq(found), stop.eq(1)]

        # ---- fit check and dispatcher
        m.submodules.fit = fit = FitCheck(rows=self.rows, d_depth=self.d_depth,
                                          c_depth=self.c_depth)
        m.d.comb += [fit.start.eq(start), fit.m.eq(self.m), fit.k.eq(self.k), fit.n.eq(self.n)]
        m.submodules.dispatcher = disp = self._dispatcher(cols=cols, fifo_depth=self.fifo_depth,
                                                    bypass=self.slots, **depths)
        wiring.connect(m, wiring.flipped(self.s_rd[cols]), disp.s_rd)
        m.d.comb += [
            disp.start.eq(start), disp.k.eq(k), disp.n.eq(n), disp.s_len.eq(s_len),
            disp.fit_busy.eq(fit.busy), disp.fit_bad.eq(fit.bad), disp.mtiles.eq(fit.mtiles),
            disp.stop.eq(stop),
        ]

        # ---- PE column issue
        # four forms of the columns' registered go (two columns each with 8): not one merged
        # register fanned out across the die
        issue = [ColumnIssue(**depths, slot=self.slots, go_copy=(j // max(1, cols // 4)) % 4)
                 for j in range(cols)]
        for j, col in enumerate(issue):
            m.submodules[f"issue_{j}"] = col
            wiring.connect(m, wiring.flipped(self.s_rd[j]), col.s_rd)
            wiring.connect(m, col.out, wiring.flipped(self.out[j]))
            m.d.comb += [
                col.start.eq(start), col.running.eq(disp.running), col.stop.eq(stop),
                col.k.eq(k), col.n.eq(n), col.hold_free.eq(self.hold_free[j]),
                self.col_fin[j].eq(col.finishing),
                self.col_busy[j].eq(col.issuing),
            ]
        if self.slots:
            on_way = self._hand_out_to_slots(m, start, stop, disp, issue)
        else:
            on_way = Const(0, cols)
            self._hand_out_head(m, disp, issue)
        for j, col in enumerate(issue):
            m.d.comb += [
                self.col_idle[j].eq((~col.has_item & ~col.slot_full & ~on_way[j]
                                     & disp.queue_empty & disp.running) | disp.ended),
                self.col_stall[j].eq(~disp.idle & ~self.col_busy[j] & ~self.col_idle[j]),
            ]

        # entry errors: the lowest code of any column this cycle, else the dispatcher's
        entry_error = Mux(Cat(*[c.bad_index for c in issue]).any(), LoaderError.INDEX,
                          Mux(Cat(*[c.bad_order for c in issue]).any(), LoaderError.ORDER,
                              Mux(Cat(*[c.bad_value for c in issue]).any(), LoaderError.ENTRY,
                                  0)))
        m.d.comb += found.eq(Mux(entry_error != 0, entry_error, disp.error))

        # ---- end of the operation
        m.d.comb += disp.cols_idle.eq(~Cat(*[c.has_item | c.slot_full for c in issue]).any()
                                      & ~on_way.any())
        m.d.comb += self.busy.eq(~disp.idle & ~disp.ended
                                 | Cat(*[c.in_flight for c in issue]).any())
        return m

    def _hand_out_head(self, m, disp, issue):
        """``slots=False``: the FIFO head goes to the lowest column that wants an item, in the
        cycle it wants it (a chain across the columns)."""
        taken = Const(0)
        for col in issue:
            m.d.comb += [col.desc.payload.eq(disp.desc.payload),
                         col.desc.valid.eq(disp.desc.valid & ~taken)]
            taken = taken | (col.desc.valid & col.desc.ready)
        m.d.comb += disp.desc.ready.eq(taken)

    def _hand_out_to_slots(self, m, start, stop, disp, issue):
        """``slots=True``: the FIFO head goes into the next-item slot of the lowest column whose
        ``want`` this loader has registered, decided from registers only; returns the columns
        whose fill is on its way (the ``fill_q`` registers).

        Cycle ``g``: ``want_q`` (the columns' ``want`` registers, registered again here) picks
        the column, the head is popped into ``item_q`` and the column's bit of ``fill_q`` set;
        ``g + 1``: the column's slot takes ``item_q``; ``g + 2``: the slot is full. A column's
        ``want`` falls in ``g + 2`` (it sees ``fill_q`` in ``g + 1``), so ``want_q`` is stale in
        ``g + 1`` and ``g + 2``: ``fill_q`` and its copy ``sent`` mask it then. The candidates
        ``want_q & ~fill_q & ~sent`` and their OR are registers of their own (``cand``,
        ``cand_any``, set from the next values of the three): ``pop`` is one LUT from
        registers, the grant a fixed priority over registers."""
        cols = self.cols
        fill_q = Signal(cols)
        item_q = Signal.like(disp.desc.payload, reset_less=True)  # data: fill_q qualifies it
        cand = Signal(cols)
        cand_any = Signal()
        grant = Signal(cols)
        lower = Const(0)  # a lower column is a candidate: fixed priority, lowest first
        for j in range(cols):
            m.d.comb += grant[j].eq(cand[j] & ~lower)
            lower = lower | cand[j]
        pop = Signal()
        m.d.comb += [pop.eq(disp.desc.valid & disp.running & ~stop & cand_any),
                     disp.desc.ready.eq(pop)]
        fill_next = Mux(pop & ~start, grant, 0)
        want = Cat(*[c.want for c in issue])
        m.d.sync += fill_q.eq(fill_next)
        self._candidates(m, start=start, pop=pop, want=want, fill_q=fill_q, grant=grant,
                         cand=cand, cand_any=cand_any)
        with m.If(pop):
            m.d.sync += item_q.eq(disp.desc.payload)
        for j, col in enumerate(issue):
            m.d.comb += [col.fill.eq(fill_q[j]), col.fill_item.eq(item_q)]
        return fill_q

    @staticmethod
    def _candidates(m, *, start, pop, want, fill_q, grant, cand, cand_any):
        """Set the registers ``cand`` (= ``want_q & ~fill_q & ~sent`` next cycle, see
        :meth:`_hand_out_to_slots`) and ``cand_any`` (their OR) from the next values of the
        three: ``want`` and ``fill_q``'s next value (``grant`` if this cycle pops, else 0) and
        ``sent``'s (``fill_q``). (The tests' reference loader computes them combinationally
        from ``want_q`` and ``sent`` registers: the same values every cycle.)"""
        # want & ~fill_next & ~fill_q, with the pop (the latest signal) last
        p, avail = pop & ~start, want & ~fill_q
        m.d.sync += [cand.eq(Mux(p, avail & ~grant, avail)),
                     cand_any.eq(Mux(p, (avail & ~grant).any(), avail.any()))]
