"""Streaming Top-K threshold select and compressor for int8 tensors (Amaranth 0.5).

:class:`ThresholdSelect` turns a dense int8 matrix ``S[K, N]``, streamed column by column, into
the compressed-S blob of ``docs/core-interface.md`` (the bytes ``sw.int_topk.compress_selected``
produces), written word by word as ``(addr, data)`` memory writes that the core can put straight
into its S buffer (``s_we = o.valid``, ``s_addr = o.payload.addr``, ``s_data = o.payload.data``,
``o.ready = 1``). Design document: ``docs/threshold-select.md``.

Pass 1 (histogram) builds one 129-bin magnitude histogram per lane in block RAM, one element per
lane per cycle; a scan from the top bin (129 cycles, which also clears the bins) merges the lanes
and finds the threshold ``t`` and the number ``ties`` of ``|x| == t`` elements to keep. Pass 2
(the host replays the stream) keeps ``|x| > t`` and the first ``ties`` elements with
``|x| == t`` in stream order, drops kept zeros, and writes the entries and column pointers; the
header (magic, shape, ``nnz``, ``ptr[0]``) is written last. The ``(t, ties)`` pair is held, so
within a Top-K period (paper Appendix A.6) only pass 2 runs (:attr:`Mode.HELD`, or
:attr:`Mode.GIVEN` with a per-layer pair kept by the host). With ``transpose`` a pass 2 writes
the blob of the transposed matrix (input-gradient ``S = Ws``) with exactly the kept set of the
last non-transposed pass 2, using the position of its last kept tie (the "cut"); THRESHOLD does
not update the cut, so run a non-transposed pass 2 on the forward matrix first.
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .contract.blob import MAGIC
from .contract.codes import BINS, SelectError, SelectMode
from .contract.cycles import select_cycles

__all__ = ["Mode", "ErrorCode", "ThresholdSelect", "estimate_cycles", "MAGIC", "BINS"]


def _signal_enum(name, py_enum, shape):
    """An Amaranth enumeration ``name`` (usable as a port/signal shape) with the members of the
    plain ``IntEnum`` ``py_enum`` of ``hw.contract.codes``: the numbers are defined there only."""
    namespace = enum.EnumType.__prepare__(name, (enum.Enum,), shape=shape)
    for member in py_enum:
        namespace[member.name] = member.value
    namespace["__module__"] = __name__
    namespace["__qualname__"] = name
    cls = enum.EnumType(name, (enum.Enum,), namespace, shape=shape)
    cls.__doc__ = py_enum.__doc__
    return cls


#: Operation selected by :attr:`ThresholdSelect.mode` at :attr:`ThresholdSelect.start`
#: (members and meaning: :class:`hw.contract.codes.SelectMode`).
Mode = _signal_enum("Mode", SelectMode, 2)
#: Sticky error code (:attr:`ThresholdSelect.error_code`), cleared by the next ``start``
#: (members and meaning: :class:`hw.contract.codes.SelectError`).
ErrorCode = _signal_enum("ErrorCode", SelectError, 4)


def estimate_cycles(rows, cols, lanes, *, mode=Mode.FULL, nnz=None):
    """Cycles from ``start`` to ``done``: :func:`hw.contract.cycles.select_cycles`."""
    return select_cycles(rows, cols, lanes, mode=mode, nnz=nnz)


def chain(m, row0, col0, rows, prefix, lanes):
    """``(row, col, ends, next)`` of every lane of a beat whose lane 0 sits at ``(row0, col0)``
    of a matrix with ``rows`` rows streamed column by column (a beat crosses several columns
    when ``rows < lanes``); ``ends[j]`` marks the last row of a column, ``next`` is the position
    after the beat."""
    r_i, c_i, end_i = [], [], []
    r, c = row0, col0
    for j in range(lanes):
        rj = Signal(16, name=f"{prefix}_row{j}")
        cj = Signal(17, name=f"{prefix}_col{j}")
        ej = Signal(name=f"{prefix}_end{j}")
        m.d.comb += [rj.eq(r), cj.eq(c), ej.eq(rj == rows - 1)]
        r_i.append(rj)
        c_i.append(cj)
        end_i.append(ej)
        r = Mux(ej, 0, rj + 1)
        c = cj + ej
    next_row = Signal(16, name=f"{prefix}_next_row")
    next_col = Signal(17, name=f"{prefix}_next_col")
    m.d.comb += [next_row.eq(r), next_col.eq(c)]
    return r_i, c_i, end_i, (next_row, next_col)


class ThresholdSelect(wiring.Component):
    """Top-K threshold select + CSC compressor of an int8 matrix ``S[K, N]`` streamed by columns.

    Parameters
    ----------
    lanes : int
        Elements per input beat (>= 1).
    depth : int
        Words of the S buffer the output addresses (``addr`` is ``ceil_log2(depth)`` bits); a
        blob that does not fit raises :attr:`ErrorCode.OVERFLOW` instead of writing past it.
    fifo_depth : int
        Records (accepted beats with at least one write) buffered between the keep logic and
        the one-word-a-cycle write serializer (``10 * lanes + 33`` bits each).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), lanes), "last": 1})))``
        The matrix in stream order: column by column (``S[0, 0], S[1, 0], … S[K-1, 0], S[0, 1],
        …``), i.e. the row-major order of ``S.T``, packed ``lanes`` elements a beat (element
        ``b * lanes + j`` in ``data[j]`` of beat ``b``, columns may straddle beats). The beat
        holding element ``K*N - 1`` is the last one and must have ``last = 1``; lanes past the
        end are ignored. Mode FULL reads the stream twice (pass 1, then a replay for pass 2).
    o : ``Out(stream.Signature(StructLayout({"addr": ceil_log2(depth), "data": 32})))``
        Memory writes of the blob into the S buffer: entries (address ``4 + N + e``) and column
        pointers ``ptr[n+1]`` (address ``4 + n``) in stream order as they are found, then the
        header words 0, 1, 2, 3 (magic, ``K | N << 16``, ``nnz``, ``ptr[0] = 0``). Every word of
        the blob is written exactly once; no other address is written.
    start : ``In(1)``
        One-cycle pulse: sample ``mode``, ``keep``, ``rows``, ``cols`` (and ``t_in``, ``ties_in``)
        and begin. Ignored while ``busy``.
    mode : ``In(Mode)``
        See :class:`Mode`.
    keep : ``In(32)``
        Target count ``k`` (``0 <= k <= K*N``; ``sw.int_topk.k_from_density``). Modes FULL and
        THRESHOLD only.
    rows, cols : ``In(16)``
        ``K`` and ``N``.
    t_in, ties_in : ``In(8)``, ``In(32)``
        Threshold pair for mode GIVEN (``t_in <= 128``).
    transpose : ``In(1)``
        Modes HELD and GIVEN: the stream is the *transpose* ``S'.T`` of a matrix ``S'`` whose
        selection was made before (input-gradient ``S = Ws`` after forward ``S' = Wsᵀ``). Ties
        are then kept by the cut instead of the tie budget: a tie at ``(r, c)`` of the stream's
        matrix is kept iff ``(c, r)`` of ``S'`` is not after the cut in ``S'``'s stream order
        (``r < cut_col``, or ``r == cut_col`` and ``c <= cut_row``). The blob is exactly
        ``sw.int_topk.compress_transposed(S', t, ties)``: the same kept set as the forward one.
    cut_row_in, cut_col_in, cut_any_in : ``In(16)``, ``In(16)``, ``In(1)``
        The cut for GIVEN (with ``transpose``; without it they are overwritten by the pass).
    cut_row, cut_col, cut_any : ``Out(16)``, ``Out(16)``, ``Out(1)``
        The held cut: ``(row, col)`` of the last tie kept by the last non-transposed pass 2,
        ``cut_any = 0`` if it kept none (``sw.int_topk.last_kept_tie``).
    busy, done : ``Out(1)``
        ``busy`` while an operation runs; ``done`` from its end until the next ``start``.
    error, error_code : ``Out(1)``, ``Out(ErrorCode)``
        Sticky until the next ``start``. On an error the unit stops writing at once (queued
        writes are dropped; the S buffer then holds a partial blob without header), raises
        ``done`` and accepts and discards every further input beat (``i.ready = 1``) so the
        producer never hangs. A stream that simply stops (no ``last``) is indistinguishable
        from a stalled producer and is waited for.
    threshold, ties, held_valid : ``Out(8)``, ``Out(32)``, ``Out(1)``
        The held pair ``(t, ties)``; valid once a pass 1 completed or a pair was given.
    nnz, s_len : ``Out(32)``
        Entries written and blob length ``4 + N + nnz`` (the core's ``s_len``), valid at ``done``.
    cycles : ``Out(32)``
        Clock cycles from ``start`` to ``done`` of the last operation.

    Throughput and latency: pass 1 accepts one beat (``lanes`` elements) every cycle; its scan
    adds ``BINS + 3`` cycles. Pass 2 accepts one beat a cycle while the record FIFO has room and
    writes one word a cycle, so it takes ``max(beats, nnz + N)`` cycles plus a few. A write
    leaves a few cycles (record FIFO latency) after the beat that causes it; the header is
    written last, after every entry and pointer, so ``done`` means the whole blob is in the S
    buffer. See :func:`estimate_cycles`.

    Integration into the core: connect ``o`` to the S buffer write port (``s_we = o.valid``,
    ``s_addr = o.payload.addr``, ``s_data = o.payload.data``, ``o.ready = 1`` or an arbiter
    grant), take ``s_len`` for the GEMM's ``s_len``, and feed ``i`` from the dense-S source in
    column order. The write order within the blob is not monotonic (pointers and entries
    interleave, header last); only the final memory contents are specified.
    """

    def __init__(self, *, lanes=8, depth=1 << 16, fifo_depth=16):
        problem = None
        if not isinstance(lanes, int) or lanes < 1:
            problem = f"lanes must be a positive int, got {lanes!r}"
        elif not isinstance(depth, int) or depth < 5:
            problem = f"depth must be an int >= 5, got {depth!r}"
        elif not isinstance(fifo_depth, int) or fifo_depth < 2:
            problem = f"fifo_depth must be an int >= 2, got {fifo_depth!r}"
        if problem:
            self._MustUse__silence = True  # never elaborated: no UnusedElaboratable warning
            raise ValueError(problem)
        self.lanes = lanes
        self.depth = depth
        self.fifo_depth = fifo_depth
        self.addr_width = max(1, ceil_log2(depth))
        self.in_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(8), lanes),
            "last": unsigned(1),
        })
        self.out_layout = data.StructLayout({
            "addr": unsigned(self.addr_width),
            "data": unsigned(32),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "start": In(1),
            "mode": In(Mode),
            "keep": In(32),
            "rows": In(16),
            "cols": In(16),
            "t_in": In(8),
            "ties_in": In(32),
            "transpose": In(1),
            "cut_row_in": In(16),
            "cut_col_in": In(16),
            "cut_any_in": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "threshold": Out(8, init=BINS - 1),
            "ties": Out(32),
            "held_valid": Out(1),
            "cut_row": Out(16),
            "cut_col": Out(16),
            "cut_any": Out(1),
            "nnz": Out(32),
            "s_len": Out(32),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes

        # ---------------------------------------------------------------- latched command
        mode = Signal(Mode)
        keep = Signal(32)
        rows = Signal(16)
        cols = Signal(16)
        n = Signal(32)
        remaining = Signal(33)  # elements still expected in the current pass
        err = Signal(ErrorCode)
        dirty = Signal()  # histogram RAMs may hold counts
        m.d.comb += [self.error_code.eq(err), self.error.eq(err != ErrorCode.NONE)]

        # ---------------------------------------------------------------- histogram RAMs
        cw = 32
        rps, wps = [], []
        for j in range(L):
            mem = memory.Memory(shape=unsigned(cw), depth=BINS, init=[])
            m.submodules[f"hist{j}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            rps.append(rp)
            wps.append(wp)

        a_valid = Signal(L)  # stage A: bin to read
        a_bin = [Signal(8, name=f"a_bin{j}") for j in range(L)]
        b_valid = Signal(L)  # stage B: read data back, write +1
        b_bin = [Signal(8, name=f"b_bin{j}") for j in range(L)]
        m.d.sync += [a_valid.eq(0), b_valid.eq(a_valid)]
        m.d.sync += [b_bin[j].eq(a_bin[j]) for j in range(L)]

        # scan / clear
        scan_addr = Signal(8)
        s1_valid = Signal()
        s1_bin = Signal(8)
        s2_valid = Signal()
        s2_bin = Signal(8)
        s2_sum = Signal(cw + ceil_log2(L + 1))
        cum = Signal(33)
        found = Signal()
        clear_addr = Signal(8)
        new_t = Signal(8)
        new_ties = Signal(32)
        m.d.sync += [s1_valid.eq(0), s2_valid.eq(s1_valid), s2_bin.eq(s1_bin),
                     s2_sum.eq(sum((rp.data for rp in rps), Const(0, s2_sum.shape())))]

        # ---------------------------------------------------------------- held threshold
        held_t = Signal(8, init=BINS - 1)
        held_ties = Signal(32)
        held_valid = Signal()
        # position (row, col) of the last tie kept by the last non-transposed pass 2
        cut_row = Signal(16)
        cut_col = Signal(16)
        cut_any = Signal()
        transpose = Signal()
        m.d.comb += [self.cut_row.eq(cut_row), self.cut_col.eq(cut_col),
                     self.cut_any.eq(cut_any)]
        m.d.comb += [self.threshold.eq(held_t), self.ties.eq(held_ties),
                     self.held_valid.eq(held_valid)]

        # ---------------------------------------------------------------- pass 2 state
        t_cur = Signal(8)
        ties_left = Signal(32)
        row = Signal(16)
        col = Signal(17)
        nnz = Signal(33)
        m.d.comb += [self.nnz.eq(nnz), self.s_len.eq(nnz + cols + 4)]

        # Records of accepted beats that carry at least one write go through a FIFO to the
        # serializer, which emits one write a cycle: entries and column pointers in stream order.
        # A record holds the lane values, which lanes emit an entry, which lanes end a column,
        # and the (row, col) of lane 0; the serializer recomputes rows/cols per lane, and since
        # entries leave in stream order the entry address and pointer value come from a counter.
        rec_layout = data.StructLayout({
            "x": data.ArrayLayout(unsigned(8), L),
            "emit": unsigned(L),
            "ends": unsigned(L),
            "row": unsigned(16),
            "col": unsigned(17),
        })
        fifo_flush = Signal()
        m.submodules.rec_fifo = rec_fifo = ResetInserter(fifo_flush)(
            SyncFIFOBuffered(width=rec_layout.size, depth=self.fifo_depth))
        rec_in = data.View(rec_layout, rec_fifo.w_data)
        cur = Signal(rec_layout)  # record being serialized
        cur_e = Signal(L)  # entries still to write
        cur_p = Signal(L)  # pointers still to write
        ent_count = Signal(33)  # entries written so far (stream order)
        req = Signal(2 * L)
        m.d.comb += req.eq(Cat(*[Cat(cur_e[j], cur_p[j]) for j in range(L)]))
        grant = Signal(2 * L)
        m.d.comb += grant.eq(req & (~req + 1))  # lowest set bit first = stream order
        s_rows, s_cols, _, _ = chain(m, cur.row, cur.col, rows, "s", L)
        ser_addr = Signal(self.addr_width)
        ser_data = Signal(32)
        ser_is_ent = Signal()
        m.d.comb += ser_is_ent.eq(Cat(*[grant[2 * j] for j in range(L)]) != 0)
        for j in range(L):
            with m.If(grant[2 * j]):
                m.d.comb += [ser_addr.eq(cols + 4 + ent_count),
                             ser_data.eq(Cat(s_rows[j], cur.x[j], Const(0, 8)))]
            with m.If(grant[2 * j + 1]):
                m.d.comb += [ser_addr.eq(s_cols[j] + 4), ser_data.eq(ent_count)]
        ser_take = Signal()
        # after this cycle nothing of the current record is left: load the next one
        ser_free = Signal()
        m.d.comb += ser_free.eq((req & ~Mux(ser_take, grant, 0)) == 0)
        m.d.comb += rec_fifo.r_en.eq(ser_free)
        with m.If(ser_take & ser_is_ent):
            m.d.sync += ent_count.eq(ent_count + 1)
        with m.If(ser_free & rec_fifo.r_rdy):
            rec_out = data.View(rec_layout, rec_fifo.r_data)
            m.d.sync += [cur.eq(rec_out), cur_e.eq(rec_out.emit), cur_p.eq(rec_out.ends)]
        with m.Elif(ser_take):
            m.d.sync += [cur_e.eq(cur_e & ~Cat(*[grant[2 * j] for j in range(L)])),
                         cur_p.eq(cur_p & ~Cat(*[grant[2 * j + 1] for j in range(L)]))]
        with m.If(fifo_flush):
            m.d.sync += [cur_e.eq(0), cur_p.eq(0)]
        ser_empty = Signal()
        m.d.comb += ser_empty.eq((req == 0) & (rec_fifo.level == 0))

        # header writes
        hdr_idx = Signal(2)
        hdr_data = Signal(32)
        with m.Switch(hdr_idx):
            with m.Case(0):
                m.d.comb += hdr_data.eq(MAGIC)
            with m.Case(1):
                m.d.comb += hdr_data.eq(Cat(rows, cols))
            with m.Case(2):
                m.d.comb += hdr_data.eq(nnz)
            with m.Case(3):
                m.d.comb += hdr_data.eq(0)

        # ---------------------------------------------------------------- input decode
        lane_valid = Signal(L)
        m.d.comb += lane_valid.eq(Cat(*[remaining > j for j in range(L)]))
        final_beat = Signal()
        m.d.comb += final_beat.eq(remaining <= L)
        last_ok = Signal()
        m.d.comb += last_ok.eq(self.i.payload.last == final_beat)
        mags = []
        for j in range(L):
            x = self.i.payload.data[j]
            mag = Signal(8, name=f"mag{j}")
            m.d.comb += mag.eq(Mux(x < 0, -x, x))
            mags.append(mag)

        # pass 2 combinational keep / address logic for the current beat
        eq = Signal(L)
        gt = Signal(L)
        m.d.comb += [eq.eq(Cat(*[(mags[j] == t_cur) & lane_valid[j] for j in range(L)])),
                     gt.eq(Cat(*[(mags[j] > t_cur) & lane_valid[j] for j in range(L)]))]
        r_i, c_i, end_i, (next_row, next_col) = chain(m, row, col, rows, "i", L)
        keep_eq = Signal(L)
        emit = Signal(L)
        rank = Const(0, 8)
        for j in range(L):
            # transposed: S is the transpose of the matrix the cut was taken on; lane (r, c) is
            # (c, r) there, at stream position r * rows' + c: keep it iff not after the cut
            before_cut = cut_any & ((r_i[j] < cut_col) |
                                    ((r_i[j] == cut_col) & (c_i[j] <= cut_row)))
            m.d.comb += keep_eq[j].eq(eq[j] & Mux(transpose, before_cut, rank < ties_left))
            rank = rank + eq[j]
        m.d.comb += emit.eq(Cat(*[(gt[j] | keep_eq[j]) & (self.i.payload.data[j] != 0)
                                  for j in range(L)]))
        ties_used = sum((keep_eq[j] for j in range(L)), Const(0, 8))
        nnz_next = Signal(33)
        m.d.comb += nnz_next.eq(nnz + sum((emit[j] for j in range(L)), Const(0, 8)))
        overflow = Signal()
        m.d.comb += overflow.eq(nnz_next + cols + 4 > self.depth)

        # ---------------------------------------------------------------- FSM
        cycles = Signal(32)
        m.d.comb += self.cycles.eq(cycles)
        m.d.comb += [self.o.valid.eq(req != 0), self.o.payload.addr.eq(ser_addr),
                     self.o.payload.data.eq(ser_data), ser_take.eq(self.o.ready & (req != 0))]

        def fail(code):
            m.d.sync += err.eq(code)
            m.d.comb += fifo_flush.eq(1)
            m.next = "ERROR"

        def fail_length():
            with m.If(final_beat):
                fail(ErrorCode.LONG)
            with m.Else():
                fail(ErrorCode.SHORT)

        def accept_start():
            with m.If(self.start):
                m.d.sync += [
                    mode.eq(self.mode), keep.eq(self.keep), rows.eq(self.rows),
                    transpose.eq(self.transpose & ((self.mode == Mode.HELD) |
                                                   (self.mode == Mode.GIVEN))),
                    cols.eq(self.cols), err.eq(ErrorCode.NONE), cycles.eq(0),
                    n.eq(0), mul_a.eq(self.cols), mul_b.eq(self.rows),
                ]
                m.d.comb += fifo_flush.eq(1)
                m.next = "MUL"

        # n = rows * cols by shift-and-add (16 cycles, no multiplier): mul_b holds the rows
        # bits still to add, mul_a the shifted cols
        n_comb = n
        mul_a = Signal(32)
        mul_b = Signal(16)

        with m.FSM(init="IDLE") as fsm:
            with m.State("IDLE"):
                accept_start()

            with m.State("MUL"):
                with m.If(mul_b == 0):
                    m.next = "SETUP"
                with m.Else():
                    with m.If(mul_b[0]):
                        m.d.sync += n.eq(n + mul_a)
                    m.d.sync += [mul_a.eq(mul_a << 1), mul_b.eq(mul_b >> 1)]

            with m.State("SETUP"):
                with m.If((rows == 0) | (cols == 0)):
                    fail(ErrorCode.SHAPE)
                with m.Elif(((mode == Mode.FULL) | (mode == Mode.THRESHOLD)) & (keep > n_comb)):
                    fail(ErrorCode.KEEP)
                with m.Elif((mode != Mode.THRESHOLD) & (cols + 4 > self.depth)):
                    fail(ErrorCode.OVERFLOW)
                with m.Elif((mode == Mode.HELD) & ~held_valid):
                    fail(ErrorCode.NO_THRESHOLD)
                with m.Elif((mode == Mode.GIVEN) & (self.t_in > BINS - 1)):
                    fail(ErrorCode.BAD_THRESHOLD)
                with m.Elif((mode == Mode.FULL) | (mode == Mode.THRESHOLD)):
                    m.d.sync += [remaining.eq(n_comb), clear_addr.eq(0)]
                    with m.If(dirty):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "HIST"
                with m.Else():
                    with m.If(mode == Mode.GIVEN):
                        m.d.sync += [held_t.eq(self.t_in), held_ties.eq(self.ties_in),
                                     cut_row.eq(self.cut_row_in), cut_col.eq(self.cut_col_in),
                                     cut_any.eq(self.cut_any_in),
                                     held_valid.eq(1)]
                    m.next = "P2_INIT"

            with m.State("CLEAR"):
                m.d.sync += clear_addr.eq(clear_addr + 1)
                with m.If(clear_addr == BINS - 1):
                    m.d.sync += dirty.eq(0)
                    m.next = "HIST"

            with m.State("HIST"):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += dirty.eq(1)
                with m.If(self.i.valid):
                    with m.If(~last_ok):
                        fail_length()
                    with m.Else():
                        m.d.sync += [a_valid.eq(lane_valid), remaining.eq(remaining - L)]
                        m.d.sync += [a_bin[j].eq(mags[j]) for j in range(L)]
                        with m.If(final_beat):
                            m.next = "HIST_DRAIN"

            with m.State("HIST_DRAIN"):
                # stage A and B empty out; then the scan starts at the top bin
                with m.If((a_valid == 0) & (b_valid == 0)):
                    m.d.sync += [scan_addr.eq(BINS - 1), cum.eq(0), found.eq(0)]
                    m.next = "SCAN"

            with m.State("SCAN"):
                # read bin scan_addr of every lane; stage 1 clears it; stage 2 sums the lanes
                m.d.sync += [scan_addr.eq(scan_addr - 1)]
                with m.If(scan_addr <= BINS - 1):  # stops issuing after bin 0 (wraps to 255)
                    m.d.sync += [s1_valid.eq(1), s1_bin.eq(scan_addr)]
                with m.If(s2_valid):
                    m.d.sync += cum.eq(cum + s2_sum)
                    with m.If(~found & (cum + s2_sum >= keep)):
                        m.d.sync += [found.eq(1), new_t.eq(s2_bin), new_ties.eq(keep - cum)]
                    with m.If(s2_bin == 0):
                        m.next = "SCAN_END"

            with m.State("SCAN_END"):
                m.d.sync += [held_t.eq(new_t), held_ties.eq(new_ties), held_valid.eq(1),
                             dirty.eq(0)]
                with m.If(mode == Mode.FULL):
                    m.next = "P2_INIT"
                with m.Else():
                    m.next = "DONE"

            with m.State("P2_INIT"):
                m.d.sync += [remaining.eq(n), row.eq(0), col.eq(0), nnz.eq(0), ent_count.eq(0),
                             t_cur.eq(held_t), ties_left.eq(held_ties)]
                with m.If(~transpose):
                    m.d.sync += cut_any.eq(0)
                m.next = "PASS2"

            with m.State("PASS2"):
                m.d.comb += self.i.ready.eq(rec_fifo.w_rdy)
                with m.If(self.i.valid & rec_fifo.w_rdy):
                    with m.If(~last_ok):
                        fail_length()
                    with m.Elif(overflow):
                        fail(ErrorCode.OVERFLOW)
                    with m.Else():
                        ends = Cat(*[end_i[j] & lane_valid[j] for j in range(L)])
                        m.d.sync += [
                            remaining.eq(remaining - L),
                            row.eq(next_row), col.eq(next_col), nnz.eq(nnz_next),
                            ties_left.eq(ties_left - ties_used),
                        ]
                        with m.If(~transpose):
                            for j in range(L):  # the highest kept tie of the beat wins
                                with m.If(keep_eq[j]):
                                    m.d.sync += [cut_any.eq(1), cut_row.eq(r_i[j]),
                                                 cut_col.eq(c_i[j])]
                        m.d.comb += [
                            rec_fifo.w_en.eq((emit | ends) != 0),
                            rec_in.emit.eq(emit), rec_in.ends.eq(ends),
                            rec_in.row.eq(row), rec_in.col.eq(col),
                        ]
                        m.d.comb += [rec_in.x[j].eq(self.i.payload.data[j].as_unsigned())
                                     for j in range(L)]
                        with m.If(final_beat):
                            m.next = "P2_FLUSH"

            with m.State("P2_FLUSH"):
                with m.If(ser_empty):
                    m.d.sync += hdr_idx.eq(0)
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.addr.eq(hdr_idx),
                             self.o.payload.data.eq(hdr_data), ser_take.eq(0)]
                with m.If(self.o.ready):
                    m.d.sync += hdr_idx.eq(hdr_idx + 1)
                    with m.If(hdr_idx == 3):
                        m.next = "DONE"

            with m.State("DONE"):
                accept_start()

            with m.State("ERROR"):
                m.d.comb += self.i.ready.eq(1)  # discard: the producer never hangs
                accept_start()

        idle = fsm.ongoing("IDLE") | fsm.ongoing("DONE") | fsm.ongoing("ERROR")
        with m.If(~idle):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += [
            self.busy.eq(~idle),
            self.done.eq(fsm.ongoing("DONE") | fsm.ongoing("ERROR")),
        ]

        # ---------------------------------------------------------------- RAM port muxing
        in_scan = fsm.ongoing("SCAN")
        in_clear = fsm.ongoing("CLEAR")
        for j in range(L):
            rp, wp = rps[j], wps[j]
            scan_rd = Mux(scan_addr > BINS - 1, 0, scan_addr)
            m.d.comb += rp.addr.eq(Mux(in_scan, scan_rd, a_bin[j]))
            with m.If(b_valid[j]):
                m.d.comb += [wp.addr.eq(b_bin[j]), wp.data.eq(rp.data + 1), wp.en.eq(1)]
            with m.Elif(in_scan & s1_valid):
                m.d.comb += [wp.addr.eq(s1_bin), wp.data.eq(0), wp.en.eq(1)]
            with m.Elif(in_clear):
                m.d.comb += [wp.addr.eq(clear_addr), wp.data.eq(0), wp.en.eq(1)]

        return m
