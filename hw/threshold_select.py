"""Streaming Top-K threshold select and compressor for int8 tensors (Amaranth 0.5).

:class:`ThresholdSelect` turns a dense int8 matrix ``S[K, N]``, streamed column by column, into
the compressed-S blob of ``docs/core-interface.md`` (the bytes ``sw.int_topk.compress_selected``
produces), written as memory writes straight into one of the core's two S buffers. Design
document: ``docs/threshold-select.md``.

Pass 1 (:class:`~hw.select_histogram.MagnitudeHistogram`) counts ``lanes`` magnitudes a cycle
into per-lane histograms and scans them for the threshold ``t`` and the number ``ties`` of
``|x| == t`` elements to keep. Pass 2 (the producer replays the stream) keeps ``|x| > t`` and
the first ``ties`` ties in stream order (:class:`~hw.select_keep.KeepFilter`), and
:class:`~hw.select_writer.BlobWriter` writes entries and column pointers, ``banks`` words a
cycle, then the header. The ``(t, ties)`` pair is held, so within a Top-K period (paper
Appendix A.6) only pass 2 runs (:attr:`Mode.HELD`, or :attr:`Mode.GIVEN` with a pair kept by
the host). With ``transpose`` a pass 2 writes the blob of the transposed matrix (input-gradient
``S = Ws``) with exactly the kept set of the last non-transposed pass 2, using the position of
its last kept tie (the "cut"). With ``by_index`` (a unit built with ``index_width > 0``) a
pass 2 keeps a tie iff the source index its beat carries is not after the cut's stream position
``cut_index``: that writes ``im2col`` of the tensor's selection from the im2col stream, exactly
(``sw.int_topk.compress_indexed``); THRESHOLD with ``by_index`` finds that cut in a second pass
over the tensor that writes nothing (so it needs no free S buffer).
:class:`~hw.select_framer.BeatFramer` checks each pass's length.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .contract.cycles import select_cycles
from .params import check_int, rejected_unused
from .select_command_check import CommandCheck
from .select_framer import BeatFramer
from .select_histogram import MagnitudeHistogram
from .select_keep import KeepFilter
from .select_layouts import (
    BINS,
    MAGIC,
    CommandLayout,
    ErrorCode,
    Mode,
    StatusSignature,
    beat_layout,
    write_layout,
)
from .select_writer import BlobWriter

__all__ = ["Mode", "ErrorCode", "ThresholdSelect", "estimate_cycles", "MAGIC", "BINS",
           "QUIET_SETTLE"]

#: Edges without activity before ``quiet``: the histogram's unconditional pipeline registers
#: (read stage, increment stage, read-port data, lane sum) take at most 3 to reach their fixed
#: point once nothing is counted or written.
QUIET_SETTLE = 4


def estimate_cycles(rows, cols, lanes, *, mode=Mode.FULL, nnz=None, banks=1, kept=None,
                    fifo_depth=16, by_index=False):
    """Cycles from the command to ``done``: :func:`hw.contract.cycles.select_cycles` (exact
    with ``kept``, the matrix whose non-zeros the pass writes)."""
    return select_cycles(rows, cols, lanes, mode=mode, nnz=nnz, banks=banks, kept=kept,
                         fifo_depth=fifo_depth, by_index=by_index)


class ThresholdSelect(wiring.Component):
    """Top-K threshold select + CSC compressor of an int8 matrix ``S[K, N]`` streamed by columns.

    Parameters
    ----------
    lanes : int
        Elements per input beat (>= 1).
    depth : int
        Words of one S buffer (``>= 5``, a multiple of ``banks``); a blob that does not fit
        raises :attr:`ErrorCode.OVERFLOW` instead of writing past it.
    banks : int
        S-buffer words written per cycle (a power of two, at most ``max(lanes, 4)``): word ``a``
        of the blob lives in sub-bank ``a % banks``. 1 fits an S buffer with one write port.
    fifo_depth : int
        Records (accepted beats with at least one write) buffered between the keep logic and
        the writer (``10 * lanes + 33`` bits each).
    index_width : int
        Bits of the optional per-lane source index of the input beat (0, the default: no side
        band, today's beat layout; a ``by_index`` command then fails with NO_INDEX).

    Members
    -------
    i : ``In(stream.Signature(beat_layout(lanes, index_width)))``
        The matrix in stream order: column by column (``S[0, 0], S[1, 0], … S[K-1, 0], S[0, 1],
        …``), i.e. the row-major order of ``S.T``, packed ``lanes`` elements a beat (element
        ``b * lanes + j`` in ``data[j]`` of beat ``b``, columns may straddle beats). The beat
        holding element ``K*N - 1`` is the last one and must have ``last = 1``; lanes past the
        end are ignored. Mode FULL reads the stream twice (pass 1, then a replay for pass 2),
        so does THRESHOLD with ``by_index`` (pass 1, then the cut pass).
        ``index[j]`` (``index_width > 0``) is the lane's source index, read by ``by_index``
        passes only (e.g. the position in the tensor ``A`` of an element of ``im2col(A)``).
    cmd : ``In(stream.Signature(CommandLayout))``
        One operation (:class:`~hw.select_layouts.CommandLayout`), taken while the unit is not
        busy.
    o : ``Out(stream.Signature(write_layout(banks, ceil_log2(depth) - log2(banks))))``
        Memory writes of the blob into S buffer ``o.payload.bank``: entries (address
        ``4 + N + e``) and column pointers ``ptr[n+1]`` (address ``4 + n``) in stream order as
        they are found, then the header words 0, 1, 2, 3 (magic, ``K | N << 16``, ``nnz``,
        ``ptr[0] = 0``). Every word of the blob is written exactly once; no other address is
        written. ``done`` comes after the last write is taken.
    status : ``Out(StatusSignature())``
        Busy/done, the sticky error, the held selection, ``nnz``/``s_len`` of the blob, cycles.
        On an error the unit stops writing at once (queued writes are dropped; the S buffer
        then holds a partial blob without header), raises ``done`` and accepts and discards
        every further input beat (``i.ready = 1``) so the producer never hangs. A stream that
        simply stops (no ``last``) is indistinguishable from a stalled producer and is waited
        for.
    quiet : ``Out(1)``
        A clock edge with ``cmd.valid = 0`` and ``i.valid = 0`` changes no register and no
        memory word of the unit: it is idle (no operation, histogram counting nothing, writer
        empty) and has been for :data:`QUIET_SETTLE` edges (its free-running pipeline registers
        have settled). A function of registers only. What a clock gate needs: the unit's clock
        may stop while ``quiet & ~cmd.valid & ~i.valid`` with no change of behaviour
        (``hw.core.SwatCore``'s ``sel_clock_gate``; the simulation harness skips the unit's
        logic in those cycles).

    Throughput: pass 1 takes one beat a cycle, its scan adds ``BINS + 3`` cycles; pass 2 takes
    one beat a cycle while the record FIFO has room, and the writer needs ``ceil(entries /
    banks) + ceil(column ends / banks)`` cycles per beat. See :func:`estimate_cycles` (exact
    given the kept matrix).
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, lanes=8, depth=1 << 16, banks=1, fifo_depth=16, index_width=0):
        check_int("ThresholdSelect", "lanes", lanes, minimum=1)
        check_int("ThresholdSelect", "index_width", index_width, minimum=0, maximum=32)
        check_int("ThresholdSelect", "depth", depth, minimum=5)
        check_int("ThresholdSelect", "banks", banks, minimum=1)
        check_int("ThresholdSelect", "fifo_depth", fifo_depth, minimum=2)
        if banks & (banks - 1) or banks > max(lanes, 4):
            raise ValueError(f"ThresholdSelect: banks must be a power of two <= "
                             f"max(lanes, 4) = {max(lanes, 4)}, not {banks}")
        if depth % banks:
            raise ValueError(f"ThresholdSelect: depth must be a multiple of banks ({banks}), "
                             f"not {depth}")
        self.lanes, self.depth, self.banks, self.fifo_depth = lanes, depth, banks, fifo_depth
        self.index_width = index_width
        self.addr_width = max(1, ceil_log2(depth))
        self.in_layout = beat_layout(lanes, index_width)
        self.out_layout = write_layout(banks, max(1, self.addr_width - ceil_log2(banks)))
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "cmd": In(stream.Signature(CommandLayout)),
            "o": Out(stream.Signature(self.out_layout)),
            "status": Out(StatusSignature()),
            "quiet": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        m.submodules.check = check = CommandCheck(self.depth, indexed=bool(self.index_width))
        m.submodules.framer = framer = BeatFramer(lanes, self.index_width)
        m.submodules.histogram = histogram = MagnitudeHistogram(lanes)
        m.submodules.keep = keep = KeepFilter(lanes, self.depth, self.index_width)
        m.submodules.writer = writer = BlobWriter(lanes, self.banks, self.addr_width,
                                                  self.fifo_depth)
        wiring.connect(m, wiring.flipped(self.i), framer.i)
        cut_pass = Signal()  # THRESHOLD by_index: a pass 2 that finds the cut, writes nothing
        m.d.comb += [writer.record.payload.eq(keep.record.payload),
                     writer.record.valid.eq(keep.record.valid & ~cut_pass),
                     keep.record.ready.eq(writer.record.ready | cut_pass),
                     keep.unlimited.eq(cut_pass)]
        wiring.connect(m, writer.o, wiring.flipped(self.o))

        command = Signal(CommandLayout)  # the operation running
        held = self.status.held  # the held selection (register)
        error_code = Signal(ErrorCode)
        cycles = Signal(32)
        m.d.comb += [
            self.status.error_code.eq(error_code),
            self.status.error.eq(error_code != ErrorCode.NONE),
            self.status.nnz.eq(keep.nnz),
            self.status.s_len.eq(keep.nnz + command.cols + 4),
            self.status.bank.eq(command.bank),
            self.status.cycles.eq(cycles),
            check.command.eq(self.cmd.payload), check.held_valid.eq(self.status.held_valid),
            framer.elements.eq(check.elements),
            keep.held.eq(held), keep.transpose.eq(command.transpose),
            keep.by_index.eq(command.by_index),
            keep.rows.eq(command.rows), keep.cols.eq(command.cols),
            writer.rows.eq(command.rows), writer.cols.eq(command.cols),
            writer.bank.eq(command.bank),
            writer.header.payload.rows.eq(command.rows),
            writer.header.payload.cols.eq(command.cols),
            writer.header.payload.nnz.eq(keep.nnz),
            histogram.scan.payload.eq(command.keep),
        ]
        selecting = (command.mode == Mode.FULL) | (command.mode == Mode.THRESHOLD)
        cut_kept = command.transpose | command.by_index  # a pass 2 that uses the cut keeps it

        def fail(code):
            m.d.sync += error_code.eq(code)
            m.d.comb += [writer.flush.eq(1), histogram.abort.eq(1)]
            m.next = "ERROR"

        def accept_command():
            m.d.comb += self.cmd.ready.eq(1)
            with m.If(self.cmd.valid):
                payload = self.cmd.payload
                pass2_only = (payload.mode == Mode.HELD) | (payload.mode == Mode.GIVEN)
                m.d.sync += [
                    command.eq(payload), error_code.eq(ErrorCode.NONE), cycles.eq(0),
                    command.transpose.eq(payload.transpose & pass2_only),
                    command.by_index.eq(payload.by_index & pass2_only),
                    cut_pass.eq(payload.by_index & (payload.mode == Mode.THRESHOLD)),
                ]
                m.d.comb += [writer.flush.eq(1), check.start.eq(1)]
                m.next = "CHECK"

        with m.FSM(init="IDLE") as fsm:
            with m.State("IDLE"):
                accept_command()
            with m.State("CHECK"):
                with m.If(check.done & (check.error != ErrorCode.NONE)):
                    fail(check.error)
                with m.Elif(check.done & selecting):
                    m.d.comb += framer.load.eq(1)
                    m.next = "COUNT"
                with m.Elif(check.done):
                    with m.If(command.mode == Mode.GIVEN):
                        m.d.sync += [held.eq(command.given), self.status.held_valid.eq(1)]
                    m.next = "KEEP_INIT"
            with m.State("COUNT"):
                m.d.comb += [framer.enable.eq(1), histogram.count.valid.eq(framer.o.valid),
                             framer.o.ready.eq(histogram.count.ready)]
                m.d.comb += [getattr(histogram.count.payload, f).eq(getattr(framer.o.payload, f))
                             for f in ("data", "lane_valid", "final")]
                with m.If(framer.length_error != ErrorCode.NONE):
                    fail(framer.length_error)
                with m.Elif(framer.o.valid & framer.o.ready & framer.o.payload.final):
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += [histogram.scan.valid.eq(1), histogram.result.ready.eq(1)]
                with m.If(histogram.result.valid):
                    m.d.sync += [held.threshold.eq(histogram.result.payload.threshold),
                                 held.ties.eq(histogram.result.payload.ties),
                                 self.status.held_valid.eq(1)]
                    m.next = "KEEP_INIT"
                    with m.If((command.mode == Mode.THRESHOLD) & ~cut_pass):
                        m.next = "DONE"
            with m.State("KEEP_INIT"):
                m.d.comb += [keep.init.eq(1), framer.load.eq(1)]
                with m.If(~cut_kept):
                    m.d.sync += held.cut_any.eq(0)
                m.next = "KEEP"
            with m.State("KEEP"):
                m.d.comb += framer.enable.eq(1)
                wiring.connect(m, framer.o, keep.beat)
                with m.If(framer.length_error != ErrorCode.NONE):
                    fail(framer.length_error)
                with m.Elif(keep.overflow):
                    fail(ErrorCode.OVERFLOW)
                with m.Elif(keep.beat.valid & keep.beat.ready):
                    with m.If(~cut_kept & keep.last_tie.any):
                        m.d.sync += [held.cut_any.eq(1), held.cut_row.eq(keep.last_tie.row),
                                     held.cut_col.eq(keep.last_tie.col),
                                     held.cut_index.eq(keep.last_tie.index)]
                    with m.If(framer.o.payload.final):
                        m.next = "HEADER"
                        with m.If(cut_pass):
                            m.next = "DONE"
            with m.State("HEADER"):
                m.d.comb += writer.header.valid.eq(1)
                with m.If(writer.header.ready):
                    m.next = "DONE"
            with m.State("DONE"):
                accept_command()
            with m.State("ERROR"):
                m.d.comb += framer.discard.eq(1)  # the producer never hangs
                accept_command()

        idle = fsm.ongoing("IDLE") | fsm.ongoing("DONE") | fsm.ongoing("ERROR")
        with m.If(~idle):
            m.d.sync += cycles.eq(cycles + 1)
        # quiet: idle for QUIET_SETTLE edges in a row (what may change a register: an
        # operation, the histogram off its idle COUNT state or its pipeline, the writer, the
        # argument check, a command or beat offered)
        working = Signal()
        m.d.comb += working.eq(~idle | histogram.busy | ~writer.idle | check.running)
        settle = Signal(range(QUIET_SETTLE + 1), init=QUIET_SETTLE)
        with m.If(working | self.cmd.valid | self.i.valid):
            m.d.sync += settle.eq(QUIET_SETTLE)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        m.d.comb += self.quiet.eq((settle == 0) & ~working)
        m.d.comb += [self.status.busy.eq(~idle),
                     self.status.done.eq(fsm.ongoing("DONE") | fsm.ongoing("ERROR"))]
        return m
