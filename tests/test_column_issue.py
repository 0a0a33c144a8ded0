"""ColumnIssue in the Amaranth simulator: the tokens of a list of work items (entries in order,
first/last flags, a zero token for an empty item, D and C addresses) under random ``hold_free``
stalls, one entry per cycle without stalls, and the entry error flags; with the next-item slot
(filled as ``hw.loader`` does: ``want`` registered, the fill a cycle later) and with the queue
head (``slot=False``); ``want`` every cycle against a Python model of the item state under random
items and stalls."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.column_issue import ColumnIssue
from sw import compress


class _DUT(Elaboratable):
    def __init__(self, words, depth=128, slot=True, go_copy=0):
        self.col = ColumnIssue(d_depth=256, s_depth=depth, c_depth=128, slot=slot,
                               go_copy=go_copy)
        self.mem = Memory(shape=32, depth=depth, init=[int(w) for w in words])

    def elaborate(self, platform):
        m = Module()
        m.submodules.col, m.submodules.mem = self.col, self.mem
        wiring.connect(m, self.col.s_rd, self.mem.read_port())
        return m


def _run(words, items, *, k, n=4, hold_p=1.0, seed=0, slot=True, go_copy=0):
    """Feed ``items`` [(entry, count, d_base, c_addr, reps)]; returns (tokens, error flags,
    cycles)."""
    dut = _DUT(words, slot=slot, go_copy=go_copy)
    c = dut.col
    rng = np.random.default_rng(seed)
    tokens, flags, cycles = [], set(), []

    async def tb(ctx):
        ctx.set(c.k, k), ctx.set(c.n, n), ctx.set(c.running, 1)
        queue = list(items)
        want_q = fill_q = sent = False  # the loader's registers (slot=True)
        for cyc in range(400):
            hold = bool(rng.random() < hold_p)
            ctx.set(c.hold_free, hold)
            if slot:
                ctx.set(c.fill, fill_q)
                grant = bool(queue) and want_q and not fill_q and not sent and not flags
                if grant:
                    e, cnt, d, a, r = queue.pop(0)
                    ctx.set(c.fill_item, {"entry": e, "count": cnt, "d_base": d, "c_addr": a,
                                          "reps": r})
                want_q, sent, fill_q = bool(ctx.get(c.want)), fill_q, grant
            else:
                ctx.set(c.desc.valid, bool(queue))
                if queue:
                    e, cnt, d, a, r = queue[0]
                    ctx.set(c.desc.payload, {"entry": e, "count": cnt, "d_base": d,
                                             "c_addr": a, "reps": r})
                if queue and ctx.get(c.desc.ready):
                    queue.pop(0)
            assert not ctx.get(c.finishing) or hold, "last entry issued without credit"
            if ctx.get(c.out.valid):
                t = ctx.get(c.out.payload)
                tokens.append((t.daddr, t.v, t.first, t.last, t.caddr))
            for name in ("bad_index", "bad_order", "bad_value"):
                if ctx.get(getattr(c, name)):
                    flags.add(name)
                    ctx.set(c.stop, 1), ctx.set(c.running, 0)  # as the loader does
            quiet = not (ctx.get(c.has_item) or ctx.get(c.in_flight) or ctx.get(c.slot_full)
                         or fill_q or sent)
            if (not queue or flags) and quiet and cyc > 2:
                cycles.append(cyc)
                return
            await ctx.tick()
        raise AssertionError("column issue hung")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return tokens, flags, cycles[0]


S = np.array([[0, 3, 0, 1], [-128, 0, 0, 2], [5, 127, 0, 0]], dtype=np.int8)
W = [int(x) for x in compress.words(compress.encode(S))]
K, N = S.shape
PTR = W[3:4 + N]


def _items(mtiles=2, g=1):
    """Chunks of ``g`` M-tiles, as the dispatcher makes them."""
    return [(4 + N + PTR[c], PTR[c + 1] - PTR[c], t * K, t * N + c, min(g, mtiles - t))
            for t in range(0, mtiles, g) for c in range(N)]


def _expected(mtiles=2, g=1):
    out = []
    passes = [(t, c, mt) for t in range(0, mtiles, g) for c in range(N)
              for mt in range(t, min(t + g, mtiles))]
    for _, c, mt in passes:
        nz = np.nonzero(S[:, c])[0]
        if len(nz) == 0:
            out.append((mt * K, 0, 1, 1, mt * N + c))
        for i, r in enumerate(nz):
            out.append((mt * K + int(r), int(S[r, c]), int(i == 0), int(i == len(nz) - 1),
                        mt * N + c))
    return out


@pytest.mark.parametrize("slot", [True, False])
@pytest.mark.parametrize("hold_p,seed,mtiles,g", [
    (1.0, 0, 2, 1), (0.5, 1, 2, 1), (0.2, 2, 2, 1), (1.0, 3, 5, 2), (0.5, 4, 7, 4)])
def test_tokens(hold_p, seed, mtiles, g, slot):
    """Each chunk streams its entries once per M-tile (D base +K, C address +N each pass)."""
    tokens, flags, _ = _run(W, _items(mtiles, g), k=K, hold_p=hold_p, seed=seed, slot=slot)
    assert flags == set() and tokens == _expected(mtiles, g)


@pytest.mark.parametrize("go_copy", [1, 2, 3])
def test_go_copies_behave_alike(go_copy):
    """Every form of the registered ``go`` (plain / inverted, with / without reset) gives the
    tokens and the cycle count of form 0."""
    ref = _run(W, _items(5, 2), k=K, hold_p=0.5, seed=4)
    assert _run(W, _items(5, 2), k=K, hold_p=0.5, seed=4, go_copy=go_copy) == ref


def test_go_copy_range(assert_refused):
    assert_refused(lambda: ColumnIssue(d_depth=256, s_depth=128, c_depth=128, go_copy=4),
                   ValueError, "ColumnIssue: go_copy must be <= 3, not 4")


@pytest.mark.parametrize("slot,lead", [(True, 4), (False, 0)])
def test_one_entry_per_cycle(slot, lead):
    """Items of at least WANT_AHEAD cycles follow each other without a gap; the slot's first
    item issues 4 cycles after the queue head's would (here: the ``want`` register and its
    copy rise after reset; in the loader they are up before the first descriptor, 2 cycles)."""
    s = np.ones((20, 3), dtype=np.int8)
    w = [int(x) for x in compress.words(compress.encode(s))]
    items = [(7 + 20 * c, 20, 0, c, 2) for c in range(3)]
    tokens, _, cycles = _run(w, items, k=20, n=3, slot=slot)
    assert len(tokens) == 120 and cycles == 120 + 5 + lead


def test_short_items_leave_the_column_idle():
    """An item of fewer than WANT_AHEAD - 1 cycles is followed by WANT_AHEAD - 1 - length idle
    cycles (the slot cannot be filled sooner)."""
    from hw.column_issue import WANT_AHEAD

    s = np.ones((2, 6), dtype=np.int8)
    w = [int(x) for x in compress.words(compress.encode(s))]
    items = [(10 + 2 * c, 2, 0, c, 1) for c in range(6)]
    tokens, _, cycles = _run(w, items, k=2, n=6)
    _, _, chained = _run(w, items, k=2, n=6, slot=False)
    assert len(tokens) == 12 and cycles - chained == 4 + 5 * (WANT_AHEAD - 1 - 2)


@pytest.mark.parametrize("index,value,flag", [
    (4 + N + 1, (W[4 + N + 1] & ~0xFFFF) | K, "bad_index"),
    (4 + N + 1, W[4 + N + 1] & ~0xFFFF, "bad_order"),
    (4 + N + 2, W[4 + N + 2] & 0xFF00FFFF, "bad_value"),
    (4 + N, W[4 + N] | 1 << 30, "bad_value"),
])
def test_entry_errors(index, value, flag):
    w = list(W)
    w[index] = value
    tokens, flags, _ = _run(w, _items(1), k=K)
    assert flags == {flag}
    assert _run(w, _items(1), k=K, slot=False)[1] == {flag}
    # the bad entry never leaves: every token is one of the good blob's
    assert all(t in _expected(1) for t in tokens)


def _s_words(rng, depth=128):
    """S words for the reference: indices rising by 0 … 2 a word (so that most items are in
    order; an item that wraps around the buffer is not), a few zero values and reserved bits."""
    words, index = [], 0
    for _ in range(depth):
        index += int(rng.integers(0, 3))
        value = int(rng.integers(1, 256)) if rng.random() < 0.97 else 0
        reserved = 0 if rng.random() < 0.97 else int(rng.integers(1, 256))
        words.append(reserved << 24 | value << 16 | index)
    return words


def _want_reference(seed, *, cycles=3000, hold_p=0.7):
    """Random items (count 0 … 255 incl. 0, reps 1 … MAX_REPS) under random ``hold_free``,
    ``running`` / ``stop`` / ``start`` (with a new ``k`` / ``n``) and spurious fills, over S
    words with random index, order and value errors: the column's ``has_item``,
    ``slot_full``, ``issuing``, ``finishing``, ``want``, ``out`` (valid, and the payload of a
    valid token), the error flags and ``in_flight`` against a Python model of the item state
    and of the 4-stage entry pipeline, with ``want`` written out in integers (issue cycles
    left ``<= WANT_AHEAD``; an item taken with ``reps * count' < WANT_AHEAD``), every cycle.
    Returns the distinct (left, count, passes left) with which ``want`` was decided while the
    column held an item, and the number of tokens and of each error flag seen."""
    from hw.column_issue import WANT_AHEAD
    from hw.dispatcher import MAX_REPS

    rng = np.random.default_rng(seed)
    words = _s_words(rng)
    dut = _DUT(words)
    c = dut.col
    top = (1 << (c.s_aw + 1)) - 1
    seen = set()
    counts = {"tokens": 0, "bad_index": 0, "bad_order": 0, "bad_value": 0}

    def item():
        r = rng.random()
        count = int(rng.integers(0, 8) if r < 0.6 else rng.integers(8, 13) if r < 0.9
                    else rng.integers(13, top + 1))
        reps = int(rng.integers(1, 4) if rng.random() < 0.5 else rng.integers(1, MAX_REPS + 1))
        return {"entry": int(rng.integers(0, 128)), "count": count,
                "d_base": int(rng.integers(0, 1 << c.d_aw)),
                "c_addr": int(rng.integers(0, 1 << c.c_aw)), "reps": reps}

    async def tb(ctx):
        go = has = slot_full = want = False
        left = count = passes = 0
        entry = item_entry = d_base = c_addr = 0
        first_pending = False
        slot = None
        want_q = fill_q = sent = False  # the loader's registers
        k, n = 150, 5
        # the entry pipeline: S read, word fetched, word registered, token; error flags
        rd = fe = wd = {"valid": False}
        tok = {"valid": False}
        flags = (False, False, False)
        prev_index = 0
        for cyc in range(cycles):
            start = bool(rng.random() < 0.01)
            running = bool(rng.random() < 0.95)
            stop = bool(rng.random() < 0.01)
            hold = bool(rng.random() < hold_p)
            grant = want_q and not fill_q and not sent
            fill = fill_q or bool(rng.random() < 0.01)
            new = item()
            if start:  # the loader's k / n registers take the new shape at start
                k, n = int(rng.integers(60, 200)), int(rng.integers(0, 1 << 16))
            for name, v in (("start", start), ("running", running), ("stop", stop),
                            ("hold_free", hold), ("fill", fill), ("k", k), ("n", n)):
                ctx.set(getattr(c, name), v)
            ctx.set(c.fill_item, new)
            # the model's combinational signals
            can = has and go
            issue_entry = can and left > 0 and (left != 1 or hold)
            issue_zero = can and left == 0 and hold
            finishing = (issue_entry and left == 1) or issue_zero
            last_pass = passes == 1
            item_done = finishing and last_pass
            take = slot_full and go and (not has or item_done)
            word = 0 if not wd["valid"] or wd["zero"] else wd["word"]
            index, value, reserved = word & 0xFFFF, word >> 16 & 0xFF, word >> 24
            checked = wd["valid"] and not wd["zero"]
            bad = (checked and index >= k,
                   checked and not wd["first"] and index <= prev_index,
                   checked and (value == 0 or reserved != 0))
            in_flight = any(flags) or rd["valid"] or fe["valid"] or wd["valid"] or tok["valid"]
            got = tuple(bool(ctx.get(getattr(c, n)))
                        for n in ("has_item", "slot_full", "issuing", "finishing", "want",
                                  "bad_index", "bad_order", "bad_value", "in_flight"))
            got += (bool(ctx.get(c.out.valid)),)
            assert got == (has, slot_full, issue_entry, finishing, want, *flags, in_flight,
                           tok["valid"]), (cyc, got)
            if tok["valid"]:
                t = ctx.get(c.out.payload)
                assert (t.daddr, t.v, t.first, t.last, t.caddr) == tok["payload"], (cyc, t)
                counts["tokens"] += 1
            for name, f in zip(("bad_index", "bad_order", "bad_value"), flags, strict=True):
                counts[name] += f
            if has:
                seen.add((min(left, 8), min(count, 8), min(passes, 8)))
            ending = (left or 1) + (passes - 1) * (count or 1) <= WANT_AHEAD
            short = take and slot["reps"] * (slot["count"] or 1) < WANT_AHEAD
            # the registers: the entry pipeline
            v = value - 256 if value >= 128 else value
            tok = {"valid": wd["valid"] and not any(bad) and not start,
                   "payload": ((wd.get("d_base", 0) + index) % (1 << c.d_aw), v,
                               int(wd.get("first", 0)), int(wd.get("last", 0)),
                               wd.get("c_addr", 0))}
            flags = tuple(b and not start for b in bad)
            if wd["valid"]:
                prev_index = index
            wd = {**fe, "valid": fe["valid"] and not start}
            fe = {**rd, "valid": rd["valid"] and not start,
                  "word": words[rd["addr"] % len(words)] if rd["valid"] else 0}
            rd = {"valid": issue_entry or issue_zero, "zero": issue_zero,
                  "first": first_pending or issue_zero, "last": finishing, "d_base": d_base,
                  "c_addr": c_addr, "addr": entry}
            # the item registers
            want = not start and (short or (not slot_full and not fill
                                            and (not has or ending)))
            slot_full = False if start or not go else True if fill else False if take \
                else slot_full
            if issue_entry:
                left, entry, first_pending = left - 1, (entry + 1) & top, False
            if finishing and not last_pass:
                left, passes, entry, first_pending = count, passes - 1, item_entry, True
                d_base = (d_base + k) % (1 << c.d_aw)
                c_addr = (c_addr + n) % (1 << c.c_aw)
            if take:
                has, left, count, passes = True, slot["count"], slot["count"], slot["reps"]
                entry = item_entry = slot["entry"]
                d_base, c_addr, first_pending = slot["d_base"], slot["c_addr"], True
            elif item_done or not go:
                has = False
            if fill:
                slot = new
            go = running and not stop and not start
            want_q, sent, fill_q = bool(ctx.get(c.want)), fill_q, grant
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen, counts


@pytest.mark.parametrize("seed,hold_p", [(0, 0.7), (1, 0.3), (2, 1.0)])
def test_want_against_reference(seed, hold_p):
    """``want`` (a table of saturated registers, no arithmetic before it) is the registered
    "the current item has at most WANT_AHEAD issue cycles left, or is taken with fewer than
    WANT_AHEAD" of the item's full counters, every cycle; the run reaches many distinct item
    states (left, count and passes on either side of the limits)."""
    seen, counts = _want_reference(seed, hold_p=hold_p)
    assert len(seen) >= 150, len(seen)
    # tokens and every error flag were compared
    assert counts["tokens"] >= 500 and min(counts.values()) >= 5, counts
    # each of left, count, passes at every small value and above
    assert {s[0] for s in seen} >= set(range(9))
    assert {s[1] for s in seen} >= set(range(9))
    assert {s[2] for s in seen} >= set(range(1, 9))
