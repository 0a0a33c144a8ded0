"""Blob writer of the threshold-select unit: records in, banked S-buffer writes out.

The compressed-S blob cannot leave as an in-order word stream: ``nnz`` (header) and the column
pointers come before the entries in memory but are known only after them. So the writer turns
each pass-2 record (one beat's survivors and column ends) into memory writes at their final
addresses, entries at ``4 + cols + e`` and pointers ``ptr[c + 1]`` at ``4 + c``, and writes the
4 header words last. ``banks`` words leave per cycle: word ``a`` goes to S sub-bank
``a % banks``, and a run of at most ``banks`` consecutive addresses touches each sub-bank once,
so the entries of a record leave in ``ceil(entries / banks)`` cycles and its pointers in
``ceil(ends / banks)``. ``banks = 1`` is one word a cycle into an unbanked S buffer.
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .select_keep import lane_positions
from .select_layouts import MAGIC, record_layout, write_layout

__all__ = ["BlobWriter", "HeaderLayout"]

#: What the header words need.
HeaderLayout = data.StructLayout({"rows": unsigned(16), "cols": unsigned(16), "nnz": unsigned(32)})


def _prefix_counts(m, bits, lanes, name):
    """``count[j]`` = set bits of ``bits[0:j]`` for ``j = 0..lanes``, as a chain of named
    signals: one adder per lane, each count computed once. (The count of every lane written as
    its own sum is ``lanes² / 2`` adders, and each use of such an expression is lowered again:
    at 32 lanes that made the writer 4 M lines of RTLIL and the Verilator model 3x slower.)"""
    count = [Signal(range(lanes + 1), name=f"{name}{j}") for j in range(lanes + 1)]
    m.d.comb += count[0].eq(0)
    for j in range(lanes):
        m.d.comb += count[j + 1].eq(count[j] + bits[j])
    return count


class BlobWriter(wiring.Component):
    """Record FIFO and write serializer.

    Parameters
    ----------
    lanes : int
        Lanes of a record.
    banks : int
        Words written per cycle (power of two).
    addr_width : int
        Bits of a blob word address (``ceil_log2(depth)``).
    fifo_depth : int
        Records buffered between the keep logic and the serializer.

    Members
    -------
    record : ``In(stream.Signature(record_layout(lanes)))``
        Records in stream order.
    header : ``In(stream.Signature(HeaderLayout))``
        Once every record is written, its 4 words are written; it is taken with the last of
        them, which ends the blob (the next record starts a new one).
    o : ``Out(stream.Signature(write_layout(banks, addr_width - log2(banks))))``
        The writes (``o.payload.bank`` is ``bank``).
    rows, cols : ``In(16)``
        ``K`` and ``N`` of the blob (entry rows, entry base address ``4 + cols``).
    bank : ``In(1)``
        The S buffer written.
    flush : ``In(1)``
        Drop every queued record and restart the entry count (new command or error).
    idle : ``Out(1)``
        Nothing queued or being written.
    """

    def __init__(self, lanes, banks, addr_width, fifo_depth):
        self.lanes, self.banks, self.fifo_depth = lanes, banks, fifo_depth
        self.bank_bits = exact_log2(banks)
        self.addr_width = addr_width
        self.row_width = max(1, addr_width - self.bank_bits)
        super().__init__({
            "record": In(stream.Signature(record_layout(lanes))),
            "header": In(stream.Signature(HeaderLayout)),
            "o": Out(stream.Signature(write_layout(banks, self.row_width))),
            "rows": In(16),
            "cols": In(16),
            "bank": In(1),
            "flush": In(1),
            "idle": Out(1),
        })

    def _emit_run(self, m, lane_words, lane_offset, in_chunk, base, word_of=None):
        """Drive the write slots with a run of consecutive addresses from ``base``: lane ``j``
        (if ``in_chunk[j]``) is word ``lane_offset[j]`` of the run. Slot-centric: slot ``b``
        takes the run word ``(b - base) % banks``, so there is one address adder per slot and
        one selection among the lanes; ``word_of(selected)`` finishes the slot's data word (one
        more adder per slot instead of one per lane)."""
        for b in range(self.banks):
            offset = Signal(range(self.banks), name=f"slot{b}_offset")
            m.d.comb += offset.eq((b - base[:self.bank_bits]) if self.banks > 1 else 0)
            selected = Signal(len(lane_words[0]), name=f"slot{b}_lane_word")
            chosen = Signal(name=f"slot{b}_used")
            for j in range(self.lanes):
                with m.If(in_chunk[j] & (lane_offset[j] == offset)):
                    m.d.comb += [selected.eq(lane_words[j]), chosen.eq(1)]
            address = base + offset
            m.d.comb += [self.o.payload.en[b].eq(chosen),
                         self.o.payload.addr[b].eq(address[self.bank_bits:]),
                         self.o.payload.data[b].eq(word_of(selected) if word_of else selected)]

    def elaborate(self, platform):
        m = Module()
        lanes, banks = self.lanes, self.banks
        layout = record_layout(lanes)
        m.submodules.fifo = fifo = ResetInserter(self.flush)(
            SyncFIFOBuffered(width=layout.size, depth=self.fifo_depth))
        wiring.connect(m, wiring.flipped(self.record), fifo.w_stream)

        current = Signal(layout)  # record being written
        entries_left = Signal(lanes)  # its emit lanes not written yet
        ends_left = Signal(lanes)  # its column ends not written yet
        entries_written = Signal(32)  # entries written since the last flush (stream order)
        m.d.comb += self.o.payload.bank.eq(self.bank)
        rows_of, _, _, _ = lane_positions(m, current.row, current.col, self.rows, lanes, "rec")
        o_taken = Signal()
        m.d.comb += o_taken.eq(self.o.valid & self.o.ready)
        entries_taken = Signal(lanes)
        ends_taken = Signal(lanes)

        # entries (row | value << 16) at 4 + cols + entry index, lowest lanes first; the
        # record's pointers follow once all its entries are written
        entry_offset = _prefix_counts(m, entries_left, lanes, "entry_offset")
        entry_chunk = Signal(lanes)
        m.d.comb += entry_chunk.eq(Cat(*[entries_left[j] & (entry_offset[j] < banks)
                                         for j in range(lanes)]))
        # ptr[col + 1] = entries up to and including the lane, at 4 + col: the columns ending in
        # a record are consecutive, from the first pending one on
        pointer_offset = _prefix_counts(m, ends_left, lanes, "pointer_offset")
        pointer_chunk = Signal(lanes)
        m.d.comb += pointer_chunk.eq(Cat(*[ends_left[j] & (pointer_offset[j] < banks)
                                           for j in range(lanes)]))
        # kept lanes above j: ptr = entries written - entries_after[j]
        emitted = _prefix_counts(m, current.emit, lanes, "emitted")
        entries_after = [Signal(range(lanes + 1), name=f"entries_after{j}")
                         for j in range(lanes)]
        for j in range(lanes):
            m.d.comb += entries_after[j].eq(emitted[lanes] - emitted[j + 1])
        ends_written = Signal(lanes)
        m.d.comb += ends_written.eq(current.ends & ~ends_left)
        first_end = Signal(17)
        m.d.comb += first_end.eq(current.col + _prefix_counts(m, ends_written, lanes,
                                                              "ends_written")[lanes])
        with m.If(entries_left != 0):
            m.d.comb += self.o.valid.eq(1)
            self._emit_run(m, [Cat(rows_of[j], current.value[j]) for j in range(lanes)],
                           entry_offset, entry_chunk, self.cols + 4 + entries_written)
            m.d.comb += entries_taken.eq(Mux(o_taken, entry_chunk, 0))
        with m.Elif(ends_left != 0):
            m.d.comb += self.o.valid.eq(1)
            self._emit_run(m, entries_after, pointer_offset, pointer_chunk, first_end + 4,
                           word_of=lambda after: entries_written - after)
            m.d.comb += ends_taken.eq(Mux(o_taken, pointer_chunk, 0))
        m.d.sync += [entries_left.eq(entries_left & ~entries_taken),
                     ends_left.eq(ends_left & ~ends_taken),
                     entries_written.eq(entries_written + _prefix_counts(
                         m, entries_taken, lanes, "entries_taken")[lanes])]

        # the next record is loaded in the cycle the current one's last write is taken
        record_done = Signal()
        m.d.comb += record_done.eq(((entries_left & ~entries_taken) == 0) &
                                   ((ends_left & ~ends_taken) == 0))
        m.d.comb += fifo.r_en.eq(record_done)
        with m.If(record_done & fifo.r_rdy):
            loaded = data.View(layout, fifo.r_data)
            m.d.sync += [current.eq(loaded), entries_left.eq(loaded.emit),
                         ends_left.eq(loaded.ends)]
        m.d.comb += self.idle.eq((entries_left == 0) & (ends_left == 0) & (fifo.level == 0))

        # header: magic, K | N << 16, nnz, ptr[0] = 0 at addresses 0..3, banks words a cycle
        header_words = Cat(Const(MAGIC, 32), self.header.payload.rows, self.header.payload.cols,
                           self.header.payload.nnz, Const(0, 32))
        header_next = Signal(3)  # first header word not written yet
        with m.If(self.idle & self.header.valid):
            m.d.comb += self.o.valid.eq(1)
            for b in range(banks):
                word = header_next + b
                with m.If(word < 4):
                    m.d.comb += [self.o.payload.en[b].eq(1),
                                 self.o.payload.addr[b].eq(word >> self.bank_bits),
                                 self.o.payload.data[b].eq(header_words.word_select(word[:2],
                                                                                    32))]
            with m.If(self.o.ready):
                m.d.sync += header_next.eq(header_next + banks)
                with m.If(header_next + banks >= 4):  # blob complete: the next one starts
                    m.d.comb += self.header.ready.eq(1)
                    m.d.sync += [header_next.eq(0), entries_written.eq(0)]

        with m.If(self.flush):
            m.d.sync += [entries_left.eq(0), ends_left.eq(0), entries_written.eq(0),
                         header_next.eq(0)]
        return m
