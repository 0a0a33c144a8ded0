"""``ColumnIssue``: streams the entries of one PE column's work items and checks them.

A work item descriptor covers ``reps`` consecutive M-tiles of one column of ``S`` (a *chunk*):
the column streams the item's entries once per M-tile, adding ``K`` to the D base and ``N`` to
the C address after each pass, so one descriptor keeps a PE column busy for ``reps`` times the
column's length even when ``S`` columns are short.

Where the next descriptor comes from (``slot``):

* ``slot=True`` (every platform but the iCE40): a registered *next-item slot*. The loader
  writes a descriptor into it (``fill``, ``fill_item``, both registers of the loader) when the
  column asks for one (``want``, a register); the column moves it into its item registers in
  the cycle it issues the last entry of its last pass (or at once when it has no item), so
  item switches cost no cycle. ``want`` rises when the column's slot is empty, no fill is on
  its way, and the current item has at most ``WANT_AHEAD`` issue cycles left including this
  cycle (at once when it has no item, and as it takes an item shorter than that): the loader's
  hand-out (two cycles of registers each way) then fills the slot exactly in time for a long
  item, and an item of ``length < WANT_AHEAD - 1`` cycles leaves ``WANT_AHEAD - 1 - length``
  idle cycles after it (``hw.contract.cycles`` counts them). No arithmetic lies between a
  register and ``want``: saturated 3-bit copies of the item's counters (issue cycles left in
  this pass, a pass's issue cycles, passes after this one), updated with the wide counters,
  index a table of constants (LUT logic), and so do the slot's ``reps`` / ``count`` (their low
  bits and an OR of their high bits); ``left + (passes_left - 1) * count <= WANT_AHEAD``
  written out was a row of carry chains, the ULX3S critical path. Every net between
  the loader and a column is registered at both ends; ``running`` and ``stop`` are registered
  here again (``go``) before they reach the issue logic, so an error stops the column one
  cycle later (the extra entry read lies inside a checked item). The item registers (next
  entry, entries left, bases, passes) are don't-care without an item: they are loaded from the
  slot in every cycle without one and updated as if ``go`` were high, so that their enables are
  functions of ``has_item``, ``hold_free`` and "the pass ends at its next issue" /
  ``last_pass`` (registers), not of ``take``.
* ``slot=False`` (the iCE40): the loader's FIFO head on ``desc``; the column asks for it
  (``desc.ready``) when it has none or issues the last entry of its last pass this cycle.

It reads one entry a cycle from its
own S read port; the entry word goes straight into a register (nothing follows the block-RAM
output in the same cycle), then into a second register (the first can sit by the block RAM,
the second by the checks), is checked — index ``< K`` (error 5), strictly increasing within the
item (6), value non-zero and reserved bits zero (7) — and leaves registered on ``out`` with the D
address ``mt*K + k``, the value and the item's ``first``/``last`` flags. A bad entry never leaves;
its error flag is registered before the loader merges the columns' flags. With the slot, the
compares' carry chains and the D adder have only registers before them (a zero token's word is
zeroed as it is registered; "to check" and "to check for order" are registers of their own),
and ``start`` clears the check stage's registers as a synchronous reset. An item without
entries sends one *zero token* (``v = 0``, ``first = last = 1``) so that its C word is written.
``hold_free`` low holds back the last entry (or zero token) of an item: the core's credit for the
PE column's result queue.

Latency: entry read → token on ``out`` 4 cycles; error flag 4 cycles after the read.
Throughput: one entry per cycle.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .dispatcher import MAX_REPS, descriptor_layout
from .params import check_int, rejected_unused
from .register_copy import RegisterCopy

__all__ = ["ColumnIssue", "token_layout", "WANT_AHEAD"]

#: ``want`` rises when the current item has at most this many issue cycles left (this cycle's
#: included): the column's ``want`` register, the loader's copy of it, its grant register and
#: the slot registers come in that order, so that the slot is full in the cycle the last entry
#: issues
WANT_AHEAD = 5


def token_layout(d_aw: int, c_aw: int) -> data.StructLayout:
    """Payload of a column's tokens: ``daddr`` (D word ``mt*K + k``), ``v`` (int8), ``first``,
    ``last`` (of the work item), ``caddr`` (C word ``mt*N + n`` of the item)."""
    from amaranth.hdl import signed

    return data.StructLayout({
        "daddr": d_aw, "v": signed(8), "first": 1, "last": 1, "caddr": c_aw,
    })


def _table(fn, width: int, *fields):
    """``fn(*values)`` as a table of constants indexed by the bits of ``fields`` (each field's
    value an unsigned integer): a function of a few register bits that yosys maps to a few LUT
    levels, where the same formula written with ``+`` / ``*`` / ``<=`` becomes carry chains."""
    index = Cat(*fields)
    table = 0
    for i in range(1 << len(index)):
        values, shift = [], 0
        for f in fields:
            values.append((i >> shift) & ((1 << len(f)) - 1))
            shift += len(f)
        table |= int(fn(*values)) << (i * width)
    return Const(table, width << len(index)).word_select(index, width)


_CAP = WANT_AHEAD + 1  # "more than WANT_AHEAD" in the saturated counters


def _cycles(n: int) -> int:
    """Issue cycles of one pass over ``n`` entries (an empty item sends one zero token), capped
    at ``_CAP``."""
    return 1 if n == 0 else min(n, _CAP)


def _more(passes_left: int) -> int:
    """Passes after the current one, capped at ``WANT_AHEAD`` (``passes_left`` 0: none taken)."""
    return WANT_AHEAD if passes_left == 0 else min(passes_left - 1, WANT_AHEAD)


def _low(v):
    """``v``'s three low bits and "any higher bit set" (value 8 … 15 stands for ``v >= 8``): an
    index for :func:`_table` that is exact wherever the function saturates below 8."""
    return Cat(v[:3], v[3:].any())


class ColumnIssue(wiring.Component):
    """Entry issue and checks of one PE column.

    Parameters
    ----------
    d_depth, s_depth, c_depth : int
        Words of the D, S and C buffers (address widths).
    slot : bool
        True (default): the next descriptor arrives in a registered slot (``fill``,
        ``fill_item``, asked for by ``want``); False: from the loader's queue head (``desc``).
        See the module docstring.
    go_copy : int
        0 … 3 (``slot=True``): which form this column's registered ``go`` takes (plain or
        inverted, with or without reset). yosys merges registers with the same input
        (``opt_merge``), which made one ``go`` register drive every column across the die;
        columns of different forms keep registers of their own (same value every cycle).

    Members
    -------
    start : In(1) — drops what is in flight.
    running : In(1) — items may be taken and issued (loader state RUN).
    stop : In(1) — an error is registered: issue nothing more.
    k, n : In(16) — the operation's K (index check, D step per pass) and N (C step per pass).
    desc : In(stream.Signature(descriptor_layout)) — the next work item (``ready``: wanted);
        ``slot=False`` only.
    fill : In(1); fill_item : In(descriptor_layout) — write ``fill_item`` into the slot
        (``slot=True`` only; the loader's registers).
    want : Out(1) — a register: the slot is empty, no fill is on its way and the current item
        ends within ``WANT_AHEAD`` issue cycles (or there is none); ``slot=True`` only.
    slot_full : Out(1) — the slot holds a descriptor (``slot=True``; 0 otherwise).
    hold_free : In(1) — the last entry / zero token of an item may issue.
    s_rd : In(ReadPort.Signature(ceil_log2(s_depth), 32)) — this column's S read port.
    out : Out(stream.Signature(token_layout, always_ready=True)) — checked tokens.
    has_item : Out(1) — the column holds a work item.
    issuing : Out(1) — an entry read is issued this cycle (not a zero token).
    finishing : Out(1) — the last entry or zero token of a pass (one C word) is issued.
    bad_index, bad_order, bad_value : Out(1) — registered entry errors (5, 6, 7).
    in_flight : Out(1) — reads, tokens or error flags are still in the pipeline.
    """

    @rejected_unused  # a refused parameter leaves no "never used" warning behind
    def __init__(self, *, d_depth: int, s_depth: int, c_depth: int, slot: bool = True,
                 go_copy: int = 0):
        check_int("ColumnIssue", "d_depth", d_depth, minimum=2)
        check_int("ColumnIssue", "s_depth", s_depth, minimum=8)
        check_int("ColumnIssue", "c_depth", c_depth, minimum=2)
        self.slot = bool(slot)
        self.go_copy = check_int("ColumnIssue", "go_copy", go_copy, minimum=0, maximum=3)
        self.s_aw, self.d_aw, self.c_aw = (ceil_log2(s_depth), ceil_log2(d_depth),
                                           ceil_log2(c_depth))
        self.layout = layout = descriptor_layout(self.s_aw, self.d_aw, self.c_aw)
        if self.slot:
            handout = {"fill": In(1), "fill_item": In(layout), "want": Out(1)}
        else:
            handout = {"desc": In(stream.Signature(layout))}
        super().__init__({
            "start": In(1), "running": In(1), "stop": In(1), "k": In(16), "n": In(16),
            **handout, "slot_full": Out(1),
            "hold_free": In(1),
            "s_rd": In(ReadPort.Signature(addr_width=self.s_aw, shape=32)),
            "out": Out(stream.Signature(token_layout(self.d_aw, self.c_aw), always_ready=True)),
            "has_item": Out(1), "issuing": Out(1), "finishing": Out(1),
            "bad_index": Out(1), "bad_order": Out(1), "bad_value": Out(1), "in_flight": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d_aw, c_aw, sa_w = self.d_aw, self.c_aw, self.s_aw + 1
        port, start = self.s_rd, self.start

        # where issuing may go on: the loader's running / stop, registered here again with the
        # slot (the loader's registers sit far from some columns: no logic after that route)
        if self.slot:
            go_in = self.running & ~self.stop & ~start
            # (``hw.register_copy``) an inverted copy starts at 1 (= no go), as the others at 0
            inverted, reset_less = bool(self.go_copy & 1), bool(self.go_copy >> 1)
            go_copy = RegisterCopy("go", (inverted, reset_less, int(inverted)))
            m.d.sync += go_copy.eq(go_in)
            go = go_copy.q
        else:
            go = self.running & ~self.stop

        # the current item: next entry address, bases, entries left with registered "none
        # left" / "one left" flags (keeps the count compare off the issue → grant path), and
        # what a new pass over the same entries starts from
        entry = Signal(sa_w)
        d_base = Signal(d_aw)
        c_addr = Signal(c_aw)
        first_pending = Signal()
        left = Signal(sa_w)
        no_entries = Signal()
        one_left = Signal()
        item_entry = Signal(sa_w)
        item_count = Signal(sa_w)
        item_none = Signal()
        item_one = Signal()
        passes_left = Signal(range(MAX_REPS + 1))
        last_pass = Signal()
        has_item = self.has_item
        can = Signal()
        issue_entry = Signal()
        issue_zero = Signal()
        item_done = Signal()
        take = Signal()  # the next item goes into the item registers this cycle
        if self.slot:
            # "at most one entry left" in registers of their own (the pass ends at its next
            # issue), in place of "one left": one register where the issue logic asked for
            # no_entries | one_left
            ends = Signal()
            item_ends = Signal()
            m.d.comb += [
                can.eq(has_item & go),
                issue_entry.eq(can & (~ends | (~no_entries & self.hold_free))),
                issue_zero.eq(can & no_entries & self.hold_free),
                self.finishing.eq(can & ends & self.hold_free),
                item_done.eq(self.finishing & last_pass),
                self.issuing.eq(issue_entry),
                port.en.eq(1), port.addr.eq(entry),
            ]
        else:
            m.d.comb += [
                can.eq(has_item & go),
                issue_entry.eq(can & ~no_entries & (~one_left | self.hold_free)),
                issue_zero.eq(can & no_entries & self.hold_free),
                self.finishing.eq((issue_entry & one_left) | issue_zero),
                item_done.eq(self.finishing & last_pass),
                self.issuing.eq(issue_entry),
                port.en.eq(1), port.addr.eq(entry),
            ]
        if self.slot:
            # saturated copies of the item's counters for ``want`` (below), updated with the
            # wide ones: left' (the pass's issue cycles left, 1 for an empty item), count' (a
            # pass's issue cycles) and passes_left - 1, each capped where ``want`` stops telling
            # values apart
            left_sat = Signal(range(_CAP + 1))
            count_sat = Signal(range(_CAP + 1))
            more_sat = Signal(range(WANT_AHEAD + 1), init=WANT_AHEAD)
            # the next-item slot, written by the loader's registers only
            slot = Signal(self.layout, reset_less=True)  # data: slot_full qualifies it
            slot_full = self.slot_full
            m.d.comb += take.eq(slot_full & go & (~has_item | item_done))
            with m.If(self.fill):
                m.d.sync += slot.eq(self.fill_item)
            with m.If(start | ~go):
                m.d.sync += slot_full.eq(0)
            with m.Elif(self.fill):
                m.d.sync += slot_full.eq(1)
            with m.Elif(take):
                m.d.sync += slot_full.eq(0)
            p = slot
            # want: the current item's issue cycles left, left' + (passes_left - 1) * count'
            # (an empty item: one zero token per pass), compared with WANT_AHEAD. No arithmetic
            # between the item's registers and ``want`` (its carry chains were the ULX3S
            # critical path): saturated copies of left', count' and passes_left - 1 are kept in
            # registers of their own next to the wide ones (below), and ``ending`` is a table
            # of their 9 bits
            ending = Signal()
            m.d.comb += ending.eq(_table(
                lambda lft, cnt, more: more < WANT_AHEAD and lft + more * cnt <= WANT_AHEAD,
                1, left_sat, count_sat, more_sat))
            # an item shorter than WANT_AHEAD cycles asks for the next one as it is taken (from
            # the slot's registers: reps * count' < WANT_AHEAD, a table of their low bits and an
            # OR of their high bits), a cycle before ``ending`` would
            short = Signal()
            m.d.comb += short.eq(_table(
                lambda reps, cnt: reps < WANT_AHEAD and reps * _cycles(cnt) < WANT_AHEAD,
                1, _low(slot.reps), _low(slot.count)))
            # = ~start & (take & short | ~slot_full & ~fill & (~has_item | ending)), with
            # ``take`` written out over registers (its logic is shared with the item registers'
            # enables otherwise) and ``start`` as a synchronous reset
            with m.If(start):
                m.d.sync += self.want.eq(0)
            with m.Else():
                m.d.sync += self.want.eq(Mux(
                    slot_full,
                    go & short & (~has_item | (ends & self.hold_free & last_pass)),
                    ~self.fill & (~has_item | ending)))
        else:
            desc = self.desc
            m.d.comb += [
                take.eq(desc.valid & desc.ready),
                # = (~has_item | item_done) & running & ~stop, written flat over registers: it
                # feeds the loader's hand-out chain across the columns
                desc.ready.eq(self.running & ~self.stop
                              & (~has_item
                                 | (last_pass & self.hold_free & (no_entries | one_left)))),
            ]
            p = desc.payload
        # the item registers' three updates: one entry issued, the next pass over the same
        # entries (next M-tile), the next item taken from the slot / queue head
        def issue_one():
            return [entry.eq(entry + 1), first_pending.eq(0), left.eq(left - 1),
                    no_entries.eq(left == 1),
                    # left' <= 1: left is 1 or 2
                    *([ends.eq((left[2:] == 0) & (left[0] ^ left[1]))] if self.slot
                      else [one_left.eq(left == 2)]),
                    *([left_sat.eq(_table(lambda v: _CAP if v == 0 else _cycles(v - 1),
                                          len(left_sat), _low(left)))] if self.slot else [])]

        def next_pass(counts):
            return [
                *([entry.eq(item_entry), left.eq(item_count), no_entries.eq(item_none),
                   ends.eq(item_ends) if self.slot else one_left.eq(item_one),
                   first_pending.eq(1)] if counts else []),
                d_base.eq(d_base + self.k), c_addr.eq(c_addr + self.n),
                passes_left.eq(passes_left - 1), last_pass.eq(passes_left == 2),
            ]

        def load(counts, bases, item):
            return [
                *([entry.eq(p.entry)] if counts else []),
                *([d_base.eq(p.d_base), c_addr.eq(p.c_addr)] if bases else []),
                *([first_pending.eq(1), left.eq(p.count), no_entries.eq(p.count == 0),
                   ends.eq(p.count[1:] == 0) if self.slot else one_left.eq(p.count == 1)]
                  if counts else []),
                *([item_entry.eq(p.entry), item_count.eq(p.count),
                   item_none.eq(p.count == 0),
                   item_ends.eq(p.count[1:] == 0) if self.slot else item_one.eq(p.count == 1)]
                  if item else []),
                *([passes_left.eq(p.reps), last_pass.eq(p.reps == 1)] if bases else []),
            ]

        if self.slot:
            # The item registers are don't-care while ``has_item`` is low (a take loads every
            # one of them), and ``has_item`` falls after a cycle without ``go``: they are
            # updated as if ``go`` were high, and loaded from the slot in every cycle without
            # an item (the take among them). Their clock enables and selects are then
            # functions of 3 or 4 registers (has_item, hold_free, ends, last_pass), not of the 7
            # of ``take``. At the ports only ``s_rd.addr`` and the payload of invalid tokens
            # differ (reads whose words are dropped).
            wrap = 1 << len(passes_left)
            count_now = _table(_cycles, len(count_sat), _low(p.count))
            # entry, left, ...: one entry issued, or the pass / item ends (with hold_free)
            with m.If(~has_item | self.hold_free | ~ends):
                with m.If(~has_item | (ends & last_pass)):
                    m.d.sync += [*load(True, False, False), left_sat.eq(count_now)]
                with m.Elif(ends):
                    m.d.sync += [*next_pass(True)[:5], left_sat.eq(count_sat)]
                with m.Else():
                    m.d.sync += issue_one()
            # bases and passes: the pass ends (with hold_free)
            with m.If(~has_item | (self.hold_free & ends)):
                with m.If(~has_item | last_pass):
                    m.d.sync += [*load(False, True, False),
                                 more_sat.eq(_table(_more, len(more_sat), p.reps))]
                with m.Else():
                    m.d.sync += [*next_pass(False), more_sat.eq(_table(
                        lambda v: _more((v - 1) % wrap), len(more_sat), passes_left))]
            # what each pass starts from: the item ends (with hold_free)
            with m.If(~has_item | (self.hold_free & ends & last_pass)):
                m.d.sync += [*load(False, False, True), count_sat.eq(count_now)]
            with m.If(take):
                m.d.sync += has_item.eq(1)
            with m.Elif(item_done | ~go):
                m.d.sync += has_item.eq(0)
        else:
            with m.If(issue_entry):
                m.d.sync += issue_one()
            with m.If(self.finishing & ~last_pass):  # next pass: same entries, next M-tile
                m.d.sync += next_pass(True)
            with m.If(take):
                m.d.sync += [has_item.eq(1), *load(True, True, True)]
            with m.Elif(item_done | ~go):
                m.d.sync += has_item.eq(0)

        # stage 1: S read in flight
        read_valid = Signal()
        read_zero = Signal()
        # data registers of the pipeline have no reset (qualified by the valid bits)
        read_first = Signal(reset_less=True)
        read_last = Signal(reset_less=True)
        read_d_base = Signal(d_aw, reset_less=True)
        read_c_addr = Signal(c_aw, reset_less=True)
        m.d.sync += [
            read_valid.eq(issue_entry | issue_zero), read_zero.eq(issue_zero),
            read_first.eq(first_pending | issue_zero), read_last.eq(self.finishing),
            read_d_base.eq(d_base), read_c_addr.eq(c_addr),
        ]
        # stage 2: the block-RAM output registered (nothing between the BRAM and this FF, which
        # the placer can put next to it: ECP5 block RAM has a 5.8 ns clock-to-output, and the
        # route on to the checks was the critical path of a ULX3S build)
        fetch_valid = Signal()
        fetch_zero = Signal()
        fetch_first = Signal(reset_less=True)
        fetch_last = Signal(reset_less=True)
        fetch_d_base = Signal(d_aw, reset_less=True)
        fetch_c_addr = Signal(c_aw, reset_less=True)
        fetched = Signal(32, reset_less=True)
        m.d.sync += [
            fetch_valid.eq(read_valid & ~start), fetch_zero.eq(read_zero),
            fetch_first.eq(read_first), fetch_last.eq(read_last),
            fetch_d_base.eq(read_d_base), fetch_c_addr.eq(read_c_addr),
            fetched.eq(port.data),
        ]
        # stage 3: entry word registered again (the route across the die), checked
        word_valid = Signal()
        word_zero = Signal()
        word_first = Signal(reset_less=True)
        word_last = Signal(reset_less=True)
        word_d_base = Signal(d_aw, reset_less=True)
        word_c_addr = Signal(c_aw, reset_less=True)
        raw_word = Signal(32, reset_less=True)
        prev_index = Signal(16)
        m.d.sync += [
            word_valid.eq(fetch_valid & ~start), word_zero.eq(fetch_zero),
            word_first.eq(fetch_first), word_last.eq(fetch_last),
            word_d_base.eq(fetch_d_base), word_c_addr.eq(fetch_c_addr),
            *([] if self.slot else [raw_word.eq(fetched)]),
        ]
        if self.slot:
            # only registers before the compares' carry chains and the D adder: the word of a
            # zero token is zeroed as it is registered (a synchronous reset of ``raw_word``), and
            # "entry to check" / "entry to check for order" are registers of their own
            word_checked = Signal()
            word_ordered = Signal()
            m.d.sync += raw_word.eq(Mux(fetch_zero, 0, fetched))
            with m.If(start):  # a synchronous reset (see the error flags below)
                m.d.sync += [word_checked.eq(0), word_ordered.eq(0)]
            with m.Else():
                m.d.sync += [word_checked.eq(fetch_valid & ~fetch_zero),
                             word_ordered.eq(fetch_valid & ~fetch_zero & ~fetch_first)]
            word = raw_word
            checked, ordered = word_checked, word_ordered
        else:
            word = Mux(word_zero, 0, raw_word)
            checked = word_valid & ~word_zero
            ordered = checked & ~word_first
        index, value, reserved = word[0:16], word[16:24], word[24:32]
        bad_index = Signal()
        bad_order = Signal()
        bad_value = Signal()
        m.d.comb += [
            bad_index.eq(checked & (index >= self.k)),
            bad_order.eq(ordered & (index <= prev_index)),
            bad_value.eq(checked & ((value == 0) | (reserved != 0))),
        ]
        with m.If(word_valid):
            m.d.sync += prev_index.eq(index)
        # stage 4: checked token with its D address, registered (the D read port is fed
        # straight from these FFs)
        out = self.out
        token_valid = Signal()
        token = Signal(out.payload.shape(), reset_less=True)
        if self.slot:
            # ``start`` (a LUT of the controller's registers, on every column) as the
            # registers' synchronous reset, not one more input of their LUTs
            with m.If(start):
                m.d.sync += [token_valid.eq(0), self.bad_index.eq(0), self.bad_order.eq(0),
                             self.bad_value.eq(0)]
            with m.Else():
                m.d.sync += [token_valid.eq(word_valid & ~bad_index & ~bad_order & ~bad_value),
                             self.bad_index.eq(bad_index), self.bad_order.eq(bad_order),
                             self.bad_value.eq(bad_value)]
        else:
            m.d.sync += token_valid.eq(word_valid & ~bad_index & ~bad_order & ~bad_value & ~start)
        m.d.sync += [
            token.daddr.eq((word_d_base + index)[:d_aw]),
            token.v.eq(value),
            token.first.eq(word_first),
            token.last.eq(word_last),
            token.caddr.eq(word_c_addr),
        ]
        m.d.comb += [out.valid.eq(token_valid), out.payload.eq(token)]
        # error flags registered before the loader merges the columns (the error is raised
        # one cycle later, which is harmless: the bad entry itself never leaves)
        if not self.slot:
            m.d.sync += [self.bad_index.eq(bad_index & ~start),
                         self.bad_order.eq(bad_order & ~start),
                         self.bad_value.eq(bad_value & ~start)]
        m.d.comb += self.in_flight.eq(self.bad_index | self.bad_order | self.bad_value
                                      | read_valid | fetch_valid | word_valid
                                      | token_valid)
        return m
