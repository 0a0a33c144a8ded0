"""Keep decision of the threshold-select unit (pass 2): which elements of a beat survive.

Keep ``|x| > t`` and the first ``ties`` elements with ``|x| == t`` in stream order (or, with
``transpose``, the ties not after the cut; with ``by_index``, the ties whose source index is not
after the cut's), drop kept zeros; the survivors and the column ends
of the beat become one record for :class:`~hw.select_writer.BlobWriter`. The rule is that of
``sw.int_topk.select_mask_threshold`` / ``compress_transposed``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .select_layouts import HeldLayout, framed_layout, magnitude, record_layout

__all__ = ["KeepFilter", "TieLayout", "lane_positions"]

#: Position of a kept tie (``any = 0``: none in the beat): ``(row, col)`` and the stream
#: position ``index`` (element number in the pass).
TieLayout = data.StructLayout({"any": 1, "row": 16, "col": 16, "index": 32})


def lane_positions(m, row0, col0, rows, lanes, prefix):
    """``(row, col, ends, next_pos)`` of every lane of a beat whose lane 0 sits at ``(row0,
    col0)`` of a matrix with ``rows`` rows streamed column by column (a beat crosses several
    columns when ``rows < lanes``). ``ends[j]`` marks the last row of a column; ``next_pos`` is
    the ``(row, col)`` after the beat."""
    row_of, col_of, ends = [], [], []
    row, col = row0, col0
    for j in range(lanes):
        row_j = Signal(16, name=f"{prefix}_row{j}")
        col_j = Signal(17, name=f"{prefix}_col{j}")
        end_j = Signal(name=f"{prefix}_end{j}")
        m.d.comb += [row_j.eq(row), col_j.eq(col), end_j.eq(row_j == rows - 1)]
        row_of.append(row_j)
        col_of.append(col_j)
        ends.append(end_j)
        row = Mux(end_j, 0, row_j + 1)
        col = col_j + end_j
    next_row = Signal(16, name=f"{prefix}_next_row")
    next_col = Signal(17, name=f"{prefix}_next_col")
    m.d.comb += [next_row.eq(row), next_col.eq(col)]
    return row_of, col_of, ends, (next_row, next_col)


class KeepFilter(wiring.Component):
    """Per-beat keep logic with the pass-2 state (position, tie budget left, entries kept).

    Parameters
    ----------
    lanes : int
        Elements per beat.
    depth : int
        S-buffer words: a beat whose entries would make the blob (``4 + cols + nnz`` words)
        longer is refused with ``overflow``.
    index_width : int
        Bits of the beats' source index (0: no side band, ``by_index`` is ignored).

    Members
    -------
    beat : ``In(stream.Signature(framed_layout(lanes, index_width)))``
        Beats of the pass; ready when ``record`` is.
    record : ``Out(stream.Signature(record_layout(lanes)))``
        One record per beat with at least one entry or column end.
    init : ``In(1)``
        Start of a pass: position ``(0, 0)``, no entries, tie budget ``held.ties``.
    held : ``In(HeldLayout)``
        Threshold, tie budget and cut of the pass (constant during the pass).
    transpose : ``In(1)``
        Keep a tie at ``(r, c)`` iff ``(c, r)`` is not after the cut in the stream order of the
        matrix the cut came from (``r < cut_col``, or ``r == cut_col`` and ``c <= cut_row``).
    by_index : ``In(1)``
        Keep a tie iff ``cut_any`` and its beat ``index <= cut_index`` (an im2col stream whose
        index is the position in the tensor the cut came from); no tie budget.
    rows, cols : ``In(16)``
        ``K`` and ``N``.
    unlimited : ``In(1)``
        A pass that writes nothing (the cut pass of THRESHOLD ``by_index``): no overflow.
    overflow : ``Out(1)``
        The beat offered on ``beat`` would overflow the S buffer (it is not passed on).
    nnz : ``Out(32)``
        Entries kept so far in this pass.
    last_tie : ``Out(TieLayout)``
        Position of the last tie the offered beat keeps (for the held cut).
    """

    def __init__(self, lanes, depth, index_width=0):
        self.lanes = lanes
        self.depth = depth
        self.index_width = index_width
        super().__init__({
            "beat": In(stream.Signature(framed_layout(lanes, index_width))),
            "record": Out(stream.Signature(record_layout(lanes))),
            "init": In(1),
            "held": In(HeldLayout),
            "transpose": In(1),
            "by_index": In(1),
            "rows": In(16),
            "cols": In(16),
            "unlimited": In(1),
            "overflow": Out(1),
            "nnz": Out(32),
            "last_tie": Out(TieLayout),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        beat, held = self.beat.payload, self.held
        row = Signal(16)  # position of lane 0 of the next beat
        col = Signal(17)
        ties_left = Signal(32)
        position = Signal(32)  # stream position of lane 0 of the next beat
        nnz = Signal(33)
        m.d.comb += self.nnz.eq(nnz)

        row_of, col_of, ends_at, next_pos = lane_positions(m, row, col, self.rows, lanes, "lane")
        above = Signal(lanes)  # |x| > t
        tie = Signal(lanes)  # |x| == t
        tie_kept = Signal(lanes)
        emit = Signal(lanes)  # kept non-zero: an entry of the blob
        for j in range(lanes):
            mag = magnitude(beat.data[j])
            m.d.comb += [above[j].eq(beat.lane_valid[j] & (mag > held.threshold)),
                         tie[j].eq(beat.lane_valid[j] & (mag == held.threshold))]
        ties_before = Const(0, 8)  # ties in lower lanes of the beat
        for j in range(lanes):
            not_after_cut = held.cut_any & (
                (row_of[j] < held.cut_col) |
                ((row_of[j] == held.cut_col) & (col_of[j] <= held.cut_row)))
            within_budget = ties_before < ties_left
            rule = Mux(self.transpose, not_after_cut, within_budget)
            if self.index_width:
                source_not_after_cut = held.cut_any & (beat.index[j] <= held.cut_index)
                rule = Mux(self.by_index, source_not_after_cut, rule)
            m.d.comb += tie_kept[j].eq(tie[j] & rule)
            ties_before = ties_before + tie[j]
            m.d.comb += emit[j].eq((above[j] | tie_kept[j]) & (beat.data[j] != 0))
            with m.If(tie_kept[j]):  # the highest kept tie of the beat wins
                m.d.comb += [self.last_tie.any.eq(1), self.last_tie.row.eq(row_of[j]),
                             self.last_tie.col.eq(col_of[j]),
                             self.last_tie.index.eq(position + j)]
        ends = Signal(lanes)
        m.d.comb += ends.eq(Cat(*ends_at) & beat.lane_valid)
        nnz_next = Signal(33)
        m.d.comb += nnz_next.eq(nnz + sum((emit[j] for j in range(lanes)), Const(0, 8)))
        m.d.comb += self.overflow.eq(self.beat.valid & ~self.unlimited &
                                     (nnz_next + self.cols + 4 > self.depth))

        m.d.comb += [
            self.record.payload.emit.eq(emit),
            self.record.payload.ends.eq(ends),
            self.record.payload.row.eq(row),
            self.record.payload.col.eq(col),
            self.record.valid.eq(self.beat.valid & ~self.overflow & ((emit | ends) != 0)),
            self.beat.ready.eq(self.record.ready),
        ]
        m.d.comb += [self.record.payload.value[j].eq(beat.data[j].as_unsigned())
                     for j in range(lanes)]

        with m.If(self.init):
            m.d.sync += [row.eq(0), col.eq(0), nnz.eq(0), ties_left.eq(held.ties),
                         position.eq(0)]
        with m.Elif(self.beat.valid & self.beat.ready & ~self.overflow):
            ties_used = sum((tie_kept[j] for j in range(lanes)), Const(0, 8))
            m.d.sync += [row.eq(next_pos[0]), col.eq(next_pos[1]), nnz.eq(nnz_next),
                         ties_left.eq(ties_left - ties_used), position.eq(position + lanes)]
        return m
