"""``Dispatcher``: the loader's header reader and work-item queue.

With one S-buffer read port it reads the blob header (magic, ``K | N << 16``, ``nnz``), checks
it against the shape registers and ``s_len``, waits for the :class:`~hw.fit_check.FitCheck`,
then reads the column pointers one per cycle — ``ptr[0]`` once, ``ptr[n+1]`` for each work item,
``ptr[n]`` being the previous read — checks each and pushes an item descriptor (entry address,
entry count, D base ``mt*K``, C address ``mt*N + n``, M-tiles ``reps``) into a FIFO. A work item
is a *chunk*: column ``n`` of ``S`` over ``reps`` consecutive M-tiles ``mt …``; chunks go in
the order (tile group 0: n = 0 … N-1), (tile group 1: …). The chunk size ``g`` (a power of two
up to ``MAX_REPS``; ``reps = min(g, M-tiles left)``) is chosen per operation from ``nnz`` and
``N`` (:func:`chunk_tiles`): short columns of ``S`` get long chunks, so that the dispatcher's one
descriptor per cycle keeps up with ``cols`` PE columns however short the columns are.
Pointers of the next items are read while the current ones stream. Only checked pointers make
descriptors, so every entry address handed out lies in ``[4+N, 4+N+nnz) ⊆ [0, s_len)``.

Pipeline of a pointer (all registered, the read address too): read issued → BRAM word
registered (with ``bypass``, the ULX3S: the block RAM's folded output register, then a fabric
register, stage B2, so that no check starts at a far block RAM's pins) → checked and the
descriptor formed into registers → FIFO. Header errors are
reported after the fit check, in the order fit (8), ``s_len`` (4), magic (1), shape (2), blob
longer than ``s_len`` (4).

Latency: ``start`` → first descriptor in the FIFO about ``max(6, ceil(mtiles/8) + 3) + 4``
cycles (with ``bypass``: stage B2 adds one cycle to the header reads and one to the pointer
pipeline, and the descriptor is at the FIFO's head in the cycle it is formed, one cycle before
the FIFO's). Throughput: one descriptor per cycle while the FIFO has room.
"""

import operator
from functools import reduce
from itertools import combinations
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .contract.blob import MAGIC
from .contract.codes import LoaderError
from .contract.cycles import MAX_REPS, chunk_tiles
from .params import check_int, rejected_unused

__all__ = ["Dispatcher", "descriptor_layout", "chunk_tiles", "MAX_REPS"]


def descriptor_layout(s_aw: int, d_aw: int, c_aw: int) -> data.StructLayout:
    """A work item (chunk): ``entry`` (S word of its first entry), ``count`` (entries), ``d_base``
    (D word ``mt*K`` of its first M-tile), ``c_addr`` (C word ``mt*N + n`` of its first
    M-tile), ``reps`` (M-tiles ``mt, mt+1, …``, 1 … ``MAX_REPS``)."""
    return data.StructLayout({"entry": s_aw + 1, "count": s_aw + 1, "d_base": d_aw,
                              "c_addr": c_aw, "reps": range(MAX_REPS + 1)})



class Dispatcher(wiring.Component):
    """Header checks and work-item descriptors of one loader operation.

    Parameters
    ----------
    cols : int
        PE columns (the chunk-size rule), >= 1.
    d_depth, s_depth, c_depth : int
        Words of the D, S and C buffers (address widths; ``s_depth`` bounds ``s_len``).
    fifo_depth : int
        Descriptors prefetched, >= 2.
    bypass : bool
        False (default): ``desc`` is the FIFO's head. True: when the FIFO is empty, the
        descriptor just formed (stage C) is the head, so that a descriptor taken at once
        skips the FIFO's cycle (``hw.loader``'s slots, which cost cycles of their own); and the
        checks read the S word from a second, fabric register (stage B2: one cycle more for
        the header and for each pointer), not from the block RAM's folded output register.

    Members
    -------
    start : In(1) — begin (the shape inputs are sampled by the loader at the same edge).
    k, n : In(16); s_len : In(ceil_log2(s_depth) + 1) — the operation's registered shape.
    fit_busy, fit_bad : In(1); mtiles : In(17) — the :class:`~hw.fit_check.FitCheck`'s result.
    stop : In(1) — an error is registered: issue nothing more.
    cols_idle : In(1) — no PE column holds an item (the end test).
    s_rd : In(ReadPort.Signature(ceil_log2(s_depth), 32)) — the dispatcher's S read port.
    desc : Out(stream.Signature(descriptor_layout)) — the prefetch FIFO's head (with
        ``bypass``: stage C's descriptor when the FIFO is empty).
    error : Out(4) — an error found this cycle (``LoaderError``; 0: none), combinational.
    running : Out(1) — work items are being handed out (state RUN; a register).
    idle, ended : Out(1) — states IDLE (before the first ``start``) and END.
    queue_empty : Out(1) — every descriptor of the operation has been taken.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, cols: int, d_depth: int, s_depth: int, c_depth: int,
                 fifo_depth: int = 6, bypass: bool = False):
        self.bypass = bool(bypass)
        self.cols = check_int("Dispatcher", "cols", cols, minimum=1)
        self.d_depth = check_int("Dispatcher", "d_depth", d_depth, minimum=2)
        self.s_depth = check_int("Dispatcher", "s_depth", s_depth, minimum=8)
        self.c_depth = check_int("Dispatcher", "c_depth", c_depth, minimum=2)
        self.fifo_depth = check_int("Dispatcher", "fifo_depth", fifo_depth, minimum=2)
        self.s_aw, self.d_aw, self.c_aw = (ceil_log2(s_depth), ceil_log2(d_depth),
                                           ceil_log2(c_depth))
        self.layout = descriptor_layout(self.s_aw, self.d_aw, self.c_aw)
        super().__init__({
            "start": In(1), "k": In(16), "n": In(16), "s_len": In(self.s_aw + 1),
            "fit_busy": In(1), "fit_bad": In(1), "mtiles": In(17),
            "stop": In(1), "cols_idle": In(1),
            "s_rd": In(ReadPort.Signature(addr_width=self.s_aw, shape=32)),
            "desc": Out(stream.Signature(self.layout)),
            "error": Out(4), "running": Out(1), "idle": Out(1), "ended": Out(1),
            "queue_empty": Out(1),
        })

    #: with ``bypass``, the read decision from registered flags (False: the form without flags,
    #: the iCE40's, the same behaviour every cycle; the tests' reference)
    _flag_decision = True
    #: the S read word register with the domain reset (True: the tests' reference)
    _word_reset = False

    def _room_per_level(self, m, room, level, *stages):
        """``room`` = FIFO level + busy ``stages`` (their valid bits) < depth without an adder
        and a compare in carry chains (the ULX3S's critical path was read_valid → room →
        tiles_left): per FIFO level, how many of the stages may be full."""
        with m.Switch(level):
            for lv in range(self.fifo_depth + 1):
                free = self.fifo_depth - lv  # room: busy stages < free
                with m.Case(lv):
                    if free > len(stages):
                        m.d.comb += room.eq(1)
                    elif free >= 1:  # not (at least ``free`` of them busy)
                        m.d.comb += room.eq(~reduce(operator.or_, (
                            reduce(operator.and_, some)
                            for some in combinations(stages, free))))

    def _plain_decision(self, m, v):
        """The read decision without ``flags`` (the iCE40): ``room`` (without ``bypass``),
        ``reps`` and the returned ``last_group`` (``tiles_left <= group``).

        The iCE40's critical path was ``group`` → that compare (a 17-bit carry chain) →
        ``raddr`` / ``next_ptr``. Here ``last_group`` is a register, set from the next values
        of both: ``group`` is ``1 << group_shift`` a cycle later, ``tiles_left`` is ``mtiles``
        in JOIN and ``tiles_left - group`` after a wrap (which the later assignment wins). Each
        compare is at ``group``'s width plus a "high bits set" flag (``group`` <= ``MAX_REPS``).
        Reset: both are 0, ``0 <= 0``. ``reps = min(tiles_left, group)`` is then a 2:1 choice
        by that register."""
        if not self.bypass:
            self._room_per_level(m, v.room, *v.fill)
        gw = len(v.group)
        g_next = (1 << v.group_shift)[:gw]

        def at_most_group(x):  # x <= g_next, for a 17-bit x
            return ~x[gw:].any() & (x[:gw] <= g_next)

        last_group = Signal(init=1)
        wrap = v.fire_last & ~last_group
        m.d.sync += last_group.eq(Mux(wrap, at_most_group((v.tiles_left - v.group)[:17]),
                                      Mux(v.join, at_most_group(v.mtiles),
                                          at_most_group(v.tiles_left))))
        m.d.comb += v.reps.eq(Mux(last_group, v.tiles_left, v.group))
        return last_group

    def elaborate(self, platform):
        m = Module()
        flags = self.bypass and self._flag_decision
        port, d_aw, c_aw = self.s_rd, self.d_aw, self.c_aw
        k, n = self.k, self.n

        fifo = m.submodules.fifo = ResetInserter(self.start)(
            SyncFIFO(width=self.layout.size, depth=self.fifo_depth))
        fifo_in = data.View(self.layout, fifo.w_data)
        m.d.comb += fifo.r_en.eq(self.desc.ready)

        # A blob that passes the header checks has nnz + N + 4 <= s_len <= s_depth, so nnz, N
        # and every good pointer fit in sw = ceil_log2(s_depth) + 1 bits: the pointer checks
        # compare at that width (plus one "high bits set" flag), not at 32 bits.
        sw = self.s_aw + 1
        nnz = Signal(sw)
        lim = Signal(signed(sw + 18))  # s_len - N - 4: the most non-zeros the blob may hold
        entry0 = Signal(17)     # 4 + N: S word of entry 0
        next_ptr = Signal(sw)   # index of the next pointer to read (<= N < 2**sw in RUN)
        tiles_left = Signal(17)  # M-tiles from the current tile group on
        group_shift = Signal(range(MAX_REPS.bit_length()))  # chunk size g = 1 << group_shift
        group = Signal(range(MAX_REPS + 1))
        reps = Signal(range(MAX_REPS + 1))  # M-tiles of the current group's chunks (comb)
        d_step = Signal(d_aw)   # g * K
        c_step = Signal(c_aw)   # g * N
        d_base = Signal(d_aw)
        c_base = Signal(c_aw)
        all_read = Signal()     # every pointer of every M-tile has been read
        # (bypass) the read decision's flags as registers: N - next_ptr - 1, tiles_left -
        # group - 1 (signed: their sign bits), next_ptr == 0, next_ptr == 1
        ptr_left = Signal(signed(sw + 1))
        tiles_rest = Signal(signed(19))
        ptr_zero, ptr_one = Signal(), Signal()
        # stage A: pointer read issued last cycle
        read_valid = Signal()
        read_ptr = Signal(sw)
        read_d_base = Signal(d_aw)
        read_c_base = Signal(c_aw)
        read_reps = Signal.like(reps)
        # stage B: the pointer word registered straight from the BRAM output
        word_valid = Signal()
        word_ptr = Signal(sw)
        word_d_base = Signal(d_aw)
        word_c_base = Signal(c_aw)
        word_reps = Signal.like(reps)
        # the block RAM's word, registered with no reset: yosys's register right after a
        # DP16KD read folds into the block RAM's output register (REGMODE OUTREG, no
        # clock-to-output path left) only without a reset. Every use is qualified: the header
        # states, ``word_valid``, ``desc_valid`` (``desc.count``, formed from it every cycle,
        # reaches ``desc.payload`` with ``desc.valid`` low; only after a domain reset while the
        # S read gives a non-zero word can it differ there, for one cycle)
        word = Signal(32, reset_less=not self._word_reset)
        # which pointer it is (ptr[0], ptr[1], ptr[N]), decided when the read is issued
        read_zero, read_one, read_last = Signal(), Signal(), Signal()
        word_zero, word_one, word_last = Signal(), Signal(), Signal()
        m.d.sync += [word.eq(port.data), word_valid.eq(read_valid & ~self.start),
                     word_ptr.eq(read_ptr), word_d_base.eq(read_d_base),
                     word_c_base.eq(read_c_base), word_reps.eq(read_reps),
                     word_zero.eq(read_zero), word_one.eq(read_one), word_last.eq(read_last)]
        # stage B2 (``bypass``, the ULX3S): the word once more, in a fabric register, which is
        # what the checks read. The folded word *is* the block RAM's output register, and the
        # placer may put that block RAM 60 tiles from the checks (ULX3S seeds 3-5 of d7a66306:
        # ``word`` → a 5-8 ns net → ``ptr_bad`` / ``trunc_bad``); this register can sit between
        # them. One cycle more per header and per pointer (``hw.contract.cycles``). Without
        # ``bypass`` (the iCE40, whose block RAMs have no output register to fold into) the
        # checks read ``word`` itself.
        if self.bypass:
            chk_word = Signal(32, reset_less=not self._word_reset)
            chk_valid = Signal()
            chk_ptr = Signal(sw)
            chk_d_base = Signal(d_aw)
            chk_c_base = Signal(c_aw)
            chk_reps = Signal.like(reps)
            chk_zero, chk_one, chk_last = Signal(), Signal(), Signal()
            m.d.sync += [chk_word.eq(word), chk_valid.eq(word_valid & ~self.start),
                         chk_ptr.eq(word_ptr), chk_d_base.eq(word_d_base),
                         chk_c_base.eq(word_c_base), chk_reps.eq(word_reps),
                         chk_zero.eq(word_zero), chk_one.eq(word_one), chk_last.eq(word_last)]
            stages = (read_valid, word_valid, chk_valid)
        else:
            chk_word, chk_valid, chk_ptr, chk_d_base, chk_c_base, chk_reps = (
                word, word_valid, word_ptr, word_d_base, word_c_base, word_reps)
            chk_zero, chk_one, chk_last = word_zero, word_one, word_last
            stages = (read_valid, word_valid)
        word_hi = chk_word[sw:].any()  # the pointer or nnz cannot fit the S buffer
        word_lo = chk_word[:sw]
        prev_word = Signal(sw)  # the pointer read before (start of the item)
        m.d.sync += lim.eq(self.s_len - self.n - 4)  # the shape is registered at start
        header_error = Signal(4)  # first header error (reported after the fit check)
        # (bypass) the magic and shape compares of the word registered: used a cycle later
        magic_bad, shape_bad = Signal(), Signal()
        if flags:
            m.d.sync += [magic_bad.eq(chk_word != MAGIC), shape_bad.eq(chk_word != Cat(k, n))]
        # (bypass) the truncation compare of word 2 (nnz), registered in HDR4 into a flag of its
        # own (its only consumer, placed beside the compare) instead of into ``header_error``:
        # JOIN reports it after ``header_error`` (seed 1 of the ULX3S: the block RAM's word →
        # a 5 ns net → the header checks → ``header_error``'s clock enable)
        hdr_error = header_error  # the header error JOIN reports (0: none)
        if flags:
            trunc_bad = Signal()
            hdr_error = Signal(4)
            m.d.comb += hdr_error.eq(Mux(header_error != 0, header_error,
                                         Mux(trunc_bad, LoaderError.TRUNC, 0)))

        # The read address is a register of its own (``raddr``: 0, 1, 2 in HDR0-2, then
        # ``next_ptr + 3``), kept up to date with ``next_ptr``: no logic between the FFs and
        # the block RAM, which the placer may put far away. A read whose word is not wanted
        # (no ``read_valid``) is harmless.
        raddr = Signal(self.s_aw)
        m.d.comb += [port.en.eq(1), port.addr.eq(raddr)]
        m.d.sync += read_valid.eq(0)
        with m.FSM(name="ctl") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += raddr.eq(0)
                    m.next = "HDR0"
            with m.State("HDR0"):
                m.d.sync += header_error.eq(Mux((self.s_len > self.s_depth) | (self.s_len < 3),
                                                int(LoaderError.TRUNC), 0))
                m.d.sync += raddr.eq(1)
                m.next = "HDR1"
            with m.State("HDR1"):
                m.d.sync += raddr.eq(2)
                m.next = "HDRB" if self.bypass else "HDR2"
            if self.bypass:
                with m.State("HDRB"):  # word = blob word 0, in stage B2 next cycle
                    m.next = "HDR2"
            with m.State("HDR2"):  # chk_word = blob word 0
                if not flags:
                    with m.If((header_error == 0) & (chk_word != MAGIC)):
                        m.d.sync += header_error.eq(LoaderError.MAGIC)
                m.next = "HDR3"
            with m.State("HDR3"):  # chk_word = blob word 1
                if flags:  # the checks of words 0 and 1 a cycle later, from registers
                    with m.If((header_error == 0) & magic_bad):
                        m.d.sync += header_error.eq(LoaderError.MAGIC)
                else:
                    with m.If((header_error == 0) & (chk_word != Cat(k, n))):
                        m.d.sync += header_error.eq(LoaderError.SHAPE)
                m.next = "HDR4"
            with m.State("HDR4"):  # chk_word = blob word 2
                m.d.sync += [
                    nnz.eq(word_lo), entry0.eq(n + 4), next_ptr.eq(0), raddr.eq(3), d_base.eq(0),
                    c_base.eq(0), all_read.eq(0), prev_word.eq(0),
                ]
                if flags:
                    m.d.sync += [ptr_left.eq(n[:sw] - 1), ptr_zero.eq(1), ptr_one.eq(0)]
                # word + N + 4 > s_len, as a narrow compare against the registered limit
                trunc = (lim < 0) | word_hi | (word_lo > lim[:sw])
                if flags:
                    with m.If((header_error == 0) & shape_bad):
                        m.d.sync += header_error.eq(LoaderError.SHAPE)
                    m.d.sync += trunc_bad.eq(trunc)
                else:
                    with m.If((header_error == 0) & trunc):
                        m.d.sync += header_error.eq(LoaderError.TRUNC)
                m.next = "JOIN"
            with m.State("JOIN"):  # wait for the fit check; its error takes precedence
                # chunk size: smallest g = 2**i with g * nnz >= 2 * cols * N (chunk_tiles)
                # (N < 2**sw once the header checks pass; after a header error g is unused)
                need = n[:sw] * (2 * self.cols)
                shift = MAX_REPS.bit_length() - 1
                for i in reversed(range(MAX_REPS.bit_length() - 1)):
                    shift = Mux((nnz << i) >= need, i, shift)
                m.d.sync += [group_shift.eq(shift), tiles_left.eq(self.mtiles)]
                if flags:  # group right from RUN's first cycle on (``tiles_rest``)
                    m.d.sync += group.eq(1 << shift)
                with m.If(~self.fit_busy):
                    with m.If(self.fit_bad):
                        m.d.comb += self.error.eq(LoaderError.FIT)
                        m.next = "END"
                    with m.Elif(hdr_error != 0):
                        m.d.comb += self.error.eq(hdr_error)
                        m.next = "END"
                    with m.Else():
                        m.d.sync += self.running.eq(1)
                        m.next = "RUN"
            with m.State("RUN"):  # ``running`` is a register equal to "in RUN" (no decode)
                with m.If(self.stop | (self.queue_empty & self.cols_idle)):
                    m.d.sync += self.running.eq(0)
                    m.next = "END"
            with m.State("END"):
                with m.If(self.start):
                    m.d.sync += raddr.eq(0)
                    m.next = "HDR0"
        m.d.comb += [self.idle.eq(fsm.ongoing("IDLE")), self.ended.eq(fsm.ongoing("END"))]

        # ---- chunk geometry (steps registered from group_shift, set in JOIN; the first use
        # is the second pointer read)
        m.d.sync += [d_step.eq(k << group_shift), c_step.eq(n << group_shift)]
        if not flags:
            m.d.sync += group.eq(1 << group_shift)
        if flags:
            m.d.comb += reps.eq(Mux(tiles_left < group, tiles_left, group))

        # ---- pointer reads (RUN), while the FIFO has room for what is in flight
        desc_valid = Signal()   # stage C: checked pointer / descriptor registered
        desc_bad = Signal()
        desc = Signal(self.layout)
        room = Signal()
        if self.bypass:
            self._room_per_level(m, room, fifo.level, *stages, desc_valid)
        if flags:
            # the read decision from register bits (the ULX3S's path n → next_ptr == n →
            # tiles_left <= group → next_ptr/raddr/c_base was 8 LUT levels): flags prepared a
            # cycle ahead, kept by a down-counter and a subtractor of registers
            at_last = ptr_left[-1]  # next_ptr == N: ptr_left = N - next_ptr - 1 is -1
            last_group = tiles_rest[-1]  # tiles_left <= group: tiles_rest < 0
            at_zero, at_one = ptr_zero, ptr_one  # next_ptr == 0, next_ptr == 1
            n_less2 = Signal.like(ptr_left)  # N - 2: ptr_left after a wrap to next_ptr = 1
            m.d.sync += n_less2.eq(n[:sw] - 2)
            # go = running & ~all_read as a register (stop, sticky until start, ends RUN the
            # cycle after it rises: clearing go on it changes nothing)
            go = Signal()
            fire = Signal()
            m.d.comb += fire.eq(go & ~self.stop & room)
            with m.If(fsm.ongoing("JOIN") & ~self.fit_busy & ~self.fit_bad
                      & (hdr_error == 0)):
                m.d.sync += go.eq(1)
            with m.Elif(self.stop | (fire & at_last & last_group)):
                m.d.sync += go.eq(0)
            wrap = fire & at_last & ~last_group
            # tiles_rest = tiles_left - group - 1 (group is set in JOIN, constant in RUN; the
            # first use is a wrap, at the earliest in RUN's second cycle)
            m.d.sync += tiles_rest.eq(Mux(wrap, tiles_rest - group, tiles_left - group - 1))
            with m.If(fire & ~(at_last & last_group)):  # next_ptr changes
                m.d.sync += [ptr_zero.eq(0), ptr_one.eq(at_last | at_zero),
                             ptr_left.eq(Mux(at_last, n_less2, ptr_left - 1))]
        else:
            at_last = next_ptr == n[:sw]
            at_zero, at_one = next_ptr == 0, next_ptr == 1
            fire = self.running & ~all_read & ~self.stop & room
            last_group = self._plain_decision(m, SimpleNamespace(
                room=room, fill=(fifo.level, read_valid, word_valid, desc_valid),
                reps=reps, tiles_left=tiles_left, group=group, group_shift=group_shift,
                mtiles=self.mtiles, join=fsm.ongoing("JOIN"), fire_last=fire & at_last))
        with m.If(fire):  # the read of raddr
            m.d.sync += [read_valid.eq(1), read_ptr.eq(next_ptr), read_d_base.eq(d_base),
                         read_c_base.eq(c_base), read_reps.eq(reps),
                         read_zero.eq(at_zero), read_one.eq(at_one), read_last.eq(at_last)]
            with m.If(at_last):
                with m.If(last_group):
                    m.d.sync += all_read.eq(1)
                with m.Else():
                    m.d.sync += [tiles_left.eq(tiles_left - group), d_base.eq(d_base + d_step),
                                 c_base.eq(c_base + c_step), next_ptr.eq(1), raddr.eq(4)]
            with m.Else():
                m.d.sync += [next_ptr.eq(next_ptr + 1), raddr.eq(raddr + 1)]

        # stage C: pointer checked and descriptor formed into registers (no compare or adder
        # in front of the FIFO's LUT-RAM write)
        # (compared at sw bits: a pointer with higher bits set is above nnz, hence bad; a bad
        # pointer stops the operation, so item_start and nnz always fit sw bits when it matters)
        item_start = Signal(sw)
        m.d.comb += item_start.eq(Mux(chk_one, 0, prev_word))
        ptr_bad = Signal()
        m.d.comb += ptr_bad.eq(word_hi | Mux(chk_zero, word_lo != 0,
                                             (word_lo < item_start) | (word_lo > nnz)
                                             | (chk_last & (word_lo != nnz))))
        m.d.sync += [
            desc_valid.eq(chk_valid & ~chk_zero & ~self.start), desc_bad.eq(ptr_bad),
            desc.entry.eq(entry0 + item_start), desc.count.eq(word_lo - item_start),
            desc.d_base.eq(chk_d_base), desc.c_addr.eq(chk_c_base + chk_ptr - 1),
            desc.reps.eq(chk_reps),
        ]
        with m.If(chk_valid):
            m.d.sync += prev_word.eq(word_lo)
            with m.If(chk_zero):  # ptr[0] makes no descriptor: only its check counts
                m.d.sync += [desc_valid.eq(ptr_bad & ~self.start), desc_bad.eq(ptr_bad)]
        good = Signal()  # stage C holds a checked descriptor for the queue
        with m.If(desc_valid & self.running & ~self.stop):
            with m.If(desc_bad):
                m.d.comb += self.error.eq(LoaderError.PTR)
            with m.Else():
                m.d.comb += good.eq(1)
                if not self.bypass:
                    m.d.comb += [fifo.w_en.eq(1), fifo_in.eq(desc)]
        if self.bypass:
            # an empty FIFO's head is stage C's descriptor, taken without entering the FIFO
            m.d.comb += [self.desc.valid.eq(fifo.r_rdy | good),
                         self.desc.payload.eq(Mux(fifo.r_rdy, fifo.r_data, desc.as_value())),
                         fifo_in.eq(desc), fifo.w_en.eq(good & ~(self.desc.ready & ~fifo.r_rdy))]
        else:
            m.d.comb += [self.desc.valid.eq(fifo.r_rdy), self.desc.payload.eq(fifo.r_data)]
        empty = all_read
        for busy in (*stages, desc_valid):
            empty = empty & ~busy
        m.d.comb += self.queue_empty.eq(empty & ~fifo.r_rdy)
        return m
