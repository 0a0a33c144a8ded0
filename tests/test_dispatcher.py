"""Dispatcher in the Amaranth simulator: the descriptors of every (M-tile, column) item in order
under random ``ready`` stalls, the header and pointer error codes, and the end of the run."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from lockstep import lockstep

from hw.contract.blob import MAGIC
from hw.contract.codes import LoaderError
from hw.dispatcher import Dispatcher, chunk_tiles
from sw import compress


class _DUT(Elaboratable):
    def __init__(self, words, depth=64, cols=2, bypass=False):
        self.disp = Dispatcher(cols=cols, d_depth=256, s_depth=depth, c_depth=128,
                               bypass=bypass)
        self.mem = Memory(shape=32, depth=depth, init=[int(w) for w in words])

    def elaborate(self, platform):
        m = Module()
        m.submodules.disp, m.submodules.mem = self.disp, self.mem
        wiring.connect(m, self.disp.s_rd, self.mem.read_port())
        return m


def _run(words, *, k, n, mtiles, s_len=None, fit_bad=0, ready_p=1.0, seed=0, cols=2,
         bypass=False):
    """Returns (descriptors, error codes seen, cycles until END)."""
    dut = _DUT(words, cols=cols, bypass=bypass)
    d = dut.disp
    rng = np.random.default_rng(seed)
    got, errors = [], []

    async def tb(ctx):
        ctx.set(d.k, k), ctx.set(d.n, n), ctx.set(d.mtiles, mtiles)
        ctx.set(d.s_len, len(words) if s_len is None else s_len)
        ctx.set(d.fit_bad, fit_bad), ctx.set(d.cols_idle, 1)
        ctx.set(d.start, 1)
        await ctx.tick()
        ctx.set(d.start, 0)
        for cyc in range(500):
            ready = bool(rng.random() < ready_p)
            ctx.set(d.desc.ready, ready)
            if ctx.get(d.desc.valid) and ready:
                p = ctx.get(d.desc.payload)
                got.append((p.entry, p.count, p.d_base, p.c_addr, p.reps))
            code = ctx.get(d.error)
            if code:
                errors.append(code)
                ctx.set(d.stop, 1)
            if ctx.get(d.ended):
                return_cycles.append(cyc)
                return
            await ctx.tick()
        raise AssertionError("dispatcher never ended")

    return_cycles = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, errors, return_cycles[0]


S = np.array([[0, 3, 0, 1], [-128, 0, 0, 2], [5, 127, 0, 0]], dtype=np.int8)
W = [int(x) for x in compress.words(compress.encode(S))]


@pytest.mark.parametrize("bypass", [False, True])
@pytest.mark.parametrize("ready_p,seed,cols,mtiles", [
    (1.0, 0, 1, 3), (0.4, 1, 2, 3), (0.1, 2, 1, 5), (1.0, 3, 4, 19), (0.5, 4, 64, 30)])
def test_descriptors_in_chunk_order(ready_p, seed, cols, mtiles, bypass):
    """Chunks of g = chunk_tiles(nnz, N, cols) M-tiles (fewer in the last group), columns in
    order within a tile group."""
    k, n = S.shape
    g = chunk_tiles(W[2], n, cols)
    assert g == {1: 2, 2: 4, 4: 8, 64: 16}[cols]
    ptr = W[3:4 + n]
    exp = [(4 + n + ptr[c], ptr[c + 1] - ptr[c], t * k, t * n + c, min(g, mtiles - t))
           for t in range(0, mtiles, g) for c in range(n)]
    got, errors, _ = _run(W, k=k, n=n, mtiles=mtiles, ready_p=ready_p, seed=seed, cols=cols,
                          bypass=bypass)
    assert errors == [] and got == exp


def _mutated(index, value):
    w = list(W)
    w[index] = value
    return w


@pytest.mark.parametrize("bypass", [False, True])
@pytest.mark.parametrize("words,s_len,fit_bad,code", [
    (_mutated(0, 0), None, 0, LoaderError.MAGIC),
    (_mutated(1, 3 | 5 << 16), None, 0, LoaderError.SHAPE),
    (W, len(W) - 1, 0, LoaderError.TRUNC),
    (W, 2, 0, LoaderError.TRUNC),
    (_mutated(0, 0), 2, 0, LoaderError.TRUNC),  # s_len first, then magic
    ([0, 3 | 5 << 16] + W[2:], None, 0, LoaderError.MAGIC),  # magic, then shape
    (_mutated(1, 3 | 5 << 16), len(W) - 1, 0, LoaderError.SHAPE),  # shape, then nnz
    (_mutated(0, 0), None, 1, LoaderError.FIT),  # the fit check first
    (_mutated(3, 1), None, 0, LoaderError.PTR),
    (_mutated(5, 0), None, 0, LoaderError.PTR),
    (_mutated(7, W[7] + 1), None, 0, LoaderError.PTR),
])
def test_errors(words, s_len, fit_bad, code, bypass):
    got, errors, _ = _run(words, k=3, n=4, mtiles=2, s_len=s_len, fit_bad=fit_bad,
                          bypass=bypass)
    assert errors[:1] == [code]
    # no descriptor is formed from a pointer at or after the bad one
    assert all(c >= 0 and e + c <= 4 + 4 + 7 for e, c, _, _, _ in got)


class _RefDispatcher(Dispatcher):
    # the read decision without flags (the iCE40's): compares of the registers, but for
    # ``tiles_left <= group``, a register itself (``last_group``; against the compare:
    # ``_RefPlainDecision``); the header checks unregistered
    _flag_decision = False


class _RefPlainDecision(Dispatcher):
    """The read decision without flags (the iCE40's) as it was before the registered
    ``last_group``: ``tiles_left <= group`` and ``min(tiles_left, group)`` as compares of the
    registers, ``room`` (without ``bypass``) by an adder and a compare."""
    _flag_decision = False

    def _plain_decision(self, m, v):
        if not self.bypass:
            level, a, b, c = v.fill
            m.d.comb += v.room.eq((level + a + b + c) < self.fifo_depth)
        m.d.comb += v.reps.eq(Mux(v.tiles_left < v.group, v.tiles_left, v.group))
        return v.tiles_left <= v.group


class _RefWordReset(Dispatcher):
    _word_reset = True  # the S read word register with the domain reset


def _blob(rng, depth):
    """A random blob (random shape, density, now and then one mutated word) and its K, N."""
    k, n = int(rng.integers(1, 6)), int(rng.choice([1, 1, 2, 3, 5, 9]))
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[rng.random((k, n)) < rng.random()] = 0
    w = [int(x) for x in compress.words(compress.encode(s))]
    if rng.random() < 0.2:
        w[int(rng.integers(0, len(w)))] = int(rng.integers(0, 12))
    return w + [0] * (depth - len(w)), k, n, len(w)


def _stimulus(rng, big_mtiles=False, s_lens=(), seen=None, restart_p=0.003):
    """Random fit delay and result, ready, stop, cols_idle and restarts: ``drive`` and
    ``after`` of :func:`lockstep.lockstep`. ``big_mtiles``: now and then an M-tile count of up
    to 17 bits (``mtiles``'s width) instead of 1-49. ``s_lens``: each restart's ``s_len``
    drawn from these (an input, not a constant); ``seen`` (a list) gets each error code and
    ``"run"`` where an operation started handing out work. ``restart_p``: a start's chance per
    cycle."""
    st = {}

    def restart():
        mtiles = int(rng.integers(1, 50))
        if big_mtiles and rng.random() < 0.3:
            mtiles = int(rng.choice([1 << int(rng.integers(5, 17)), int(rng.integers(1, 1 << 17))]))
        st.update(fit_left=int(rng.integers(0, 12)), stopped=0, mtiles=mtiles, ran=0)
        if s_lens:
            st["s_len"] = int(rng.choice(s_lens))

    def drive(cyc):
        start = cyc == 0 or rng.random() < restart_p
        if start:
            restart()
        ins = {"start": start, "fit_busy": st["fit_left"] > 0,
               "fit_bad": st["fit_left"] == 0 and rng.random() < 0.05, "mtiles": st["mtiles"],
               "stop": st["stopped"], "cols_idle": rng.random() < 0.5,
               "desc.ready": rng.random() < 0.6}
        if s_lens:
            ins["s_len"] = st["s_len"]
        st["fit_left"] = max(0, st["fit_left"] - 1)
        return ins

    def after(cyc, get):
        if seen is not None and get("error") and not st["stopped"]:
            seen.append(get("error"))
        elif seen is not None and get("running") and not st["ran"]:
            seen.append("run")
            st["ran"] = 1
        if get("error") or rng.random() < 0.002:
            st["stopped"] = 1

    restart()
    return drive, after


def _resets(rng, cycles, bypass):
    """Random domain resets of 1-4 cycles: the reset per cycle, and the cycles after each whose
    ``desc.count`` is formed from the word loaded in the reset's last cycle: the second (the
    third as well with ``bypass``, whose checks read a second register without reset)."""
    high, left = [], 0
    for cyc in range(cycles):
        if not left and cyc > 0 and rng.random() < 0.01:
            left = int(rng.integers(1, 5))
        high.append(left > 0)
        left = max(0, left - 1)
    late = (2, 3) if bypass else (2,)
    second = {c + d for c in range(cycles) if high[c] and not any(high[c + 1:c + 2])
              for d in late}
    return high, second


def _header_blob(rng, depth):
    """A blob of :func:`_blob` with its header broken now and then, alone or together: the
    magic, the shape word, ``nnz`` too large for ``s_len``, ``s_len`` itself (short, too long
    for the buffer, too short for the blob)."""
    w, k, n, s_len = _blob(rng, depth)
    if rng.random() < 0.3:
        w[0] ^= 1 << int(rng.integers(0, 32))
    if rng.random() < 0.3:
        w[1] ^= 1 << int(rng.integers(0, 32))
    if rng.random() < 0.5:  # nnz + N + 4 > s_len, now and then by far (high bits)
        w[2] += int(rng.choice([1, 2, 40, 1 << 12, 1 << 31]))
    if rng.random() < 0.2:
        s_len = int(rng.choice([0, 2, depth + 1, max(3, s_len - 1)]))
    return w, k, n, s_len


def _compare_every_cycle(seed, cols, new_cls=Dispatcher, ops=12, ref_cls=_RefDispatcher,
                         payload_always=False, resets=False, stats=None, blob=_blob,
                         bypass=True, depth=64, big_mtiles=False, vary_s_len=False):
    """Random operations (random fit delay and result, ready, stop, cols_idle, restarts):
    every output port of the dispatcher equals the reference's in every cycle (``desc.payload``
    while ``desc.valid``; with ``payload_always`` in every cycle but the second (and with ``bypass``
    the third) after a domain reset). ``resets``: random domain resets too (``resets="all"``: the
    payload compared in those cycles as well); ``stats`` (a dict) gets their count. ``bypass``,
    ``depth`` (S words): the dispatcher's; ``big_mtiles``: of :func:`_stimulus`. ``vary_s_len``:
    each restart's ``s_len`` is the blob's, one word short (truncated) or 2 (refused in HDR0), so
    that one operation's header error is followed by another's outcome in one simulation
    (``stats["seen"]``: per simulation, :func:`_stimulus`'s ``seen``)."""
    rng = np.random.default_rng(seed)
    reset_rng = np.random.default_rng(seed + 1000)  # the stimulus's sequence as without
    blobs = [blob(rng, depth) for _ in range(ops)]
    kw = dict(cols=cols, d_depth=256, s_depth=depth, c_depth=128, bypass=bypass)
    checked = 0  # one simulation per blob (its own S buffer), restarts within it
    for words, k, n, s_len in blobs:
        seen = None
        if stats is not None:
            seen = []
            stats.setdefault("seen", []).append(seen)
        drive, after = _stimulus(rng, big_mtiles,
                                 s_lens=(s_len, s_len - 1, 2) if vary_s_len else (), seen=seen,
                                 restart_p=0.02 if vary_s_len else 0.003)
        high, second = _resets(reset_rng, 400, bypass) if resets else ([False] * 400, set())
        if stats is not None:
            stats["resets"] = stats.get("resets", 0) + sum(
                h and (c == 0 or not high[c - 1]) for c, h in enumerate(high))
        if stats is not None:
            stats.setdefault("errors", []).append((words[:3], k, n, s_len))
        payloads = [("desc.valid", "desc.payload")]
        if payload_always:
            payloads.append((lambda c, second=second: resets == "all" or c not in second,
                             "desc.payload"))
        checked += lockstep(
            new_cls(**kw), ref_cls(**kw), words, depth, cycles=400,
            constants={"k": k, "n": n, "s_len": s_len}, drive=drive, after=after,
            outputs=["error", "running", "idle", "ended", "queue_empty", "desc.valid",
                     "s_rd.addr", "s_rd.en"],
            payloads=payloads, reset=lambda c, high=high: high[c])
    return checked


@pytest.mark.parametrize("seed,cols", [(0, 1), (1, 2), (2, 8), (3, 64)])
def test_flag_decision_equals_compares_every_cycle(seed, cols):
    """The registered-flag read decision (``bypass``) against the plain compares: every port
    every cycle under random stalls, fit delays, stops and restarts."""
    assert _compare_every_cycle(seed, cols) > 100


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_flag_header_checks_equal_compares_every_cycle(seed):
    """The header checks of ``bypass`` (magic and shape compares registered, the truncation
    compare into a flag of its own reported by JOIN) against the plain compares, every port
    every cycle, on blobs with broken headers (alone and together: the error codes' order) and
    random fit delays (the fit check done already in JOIN's first cycle, or later)."""
    stats = {}
    assert _compare_every_cycle(seed, 2, ops=24, blob=_header_blob, stats=stats) > 20
    headers = stats["errors"]
    bad = [(w[0] != MAGIC, w[1] != (k | n << 16), w[2] + n + 4 > s_len)
           for w, k, n, s_len in headers]
    assert sum(m and t for m, _, t in bad) >= 2 and sum(s and t for _, s, t in bad) >= 2
    assert sum(t and not m and not s for m, s, t in bad) >= 2


@pytest.mark.parametrize("seed", [13, 14])
def test_a_header_error_does_not_outlive_its_operation(seed):
    """Operations in one simulation whose ``s_len`` differ (the blob's, one word short, 2):
    the truncation error of one (with ``bypass`` from its own flag, ``trunc_bad``, set in
    HDR4) is not reported by the next, against the plain compares every cycle. (The tests
    above keep one blob and ``s_len`` per simulation: there a flag that kept the previous
    operation's value would go unseen; a sticky ``trunc_bad`` fails this test.)"""
    stats = {}
    _compare_every_cycle(seed, 2, ops=8, vary_s_len=True, stats=stats)
    # a truncated operation followed by one that runs (seen with a flag that outlived it)
    after_trunc = sum(1 for seen in stats["seen"] for i, x in enumerate(seen)
                      if x == "run" and LoaderError.TRUNC in seen[:i])
    assert after_trunc >= 5, stats["seen"]


@pytest.mark.parametrize("seed,cols,bypass,resets", [
    (20, 2, False, False), (21, 2, False, "all"), (22, 1, False, False), (23, 8, False, "all"),
    (24, 2, True, "all")])
def test_registered_last_group_equals_compares_every_cycle(seed, cols, bypass, resets):
    """The read decision without flags (the iCE40's: ``bypass=False``, S buffer of 256
    words, 2 columns) with ``last_group`` a register and ``room`` from the FIFO level per
    case, against the compares and the adder it replaced: every port every cycle, the whole
    ``desc.payload`` too, under random stalls, fit delays, stops, restarts, M-tile counts up to
    17 bits and (``resets``) domain resets; with ``bypass`` (flags off) as well."""
    stats = {}
    assert _compare_every_cycle(seed, cols, ref_cls=_RefPlainDecision, new_cls=_RefDispatcher,
                                bypass=bypass, depth=256, big_mtiles=True, resets=resets,
                                payload_always=True, stats=stats) > 500
    assert not resets or stats["resets"] > 20


@pytest.mark.parametrize("seed,cols", [(4, 1), (5, 2), (6, 8)])
def test_word_without_reset_every_cycle(seed, cols):
    """The S read word register without reset (so that it folds into the block RAM's output
    register) against the same register with the domain reset: every port every cycle, the
    whole ``desc.payload`` too; with random domain resets as well, the payload may differ only
    in the second and third cycle after a reset (``desc.count`` from the words loaded in the
    reset's last cycle: ``word`` and stage B2's copy), and there only with ``desc.valid``
    low."""
    assert _compare_every_cycle(seed, cols, ref_cls=_RefWordReset, payload_always=True) > 1000
    stats = {}
    assert _compare_every_cycle(seed, cols, ref_cls=_RefWordReset, payload_always=True,
                                resets=True, stats=stats) > 1000
    assert stats["resets"] > 20


def test_word_reset_compare_sees_resets():
    """The domain resets above reach the word register: with the payload compared in the second
    cycle after each reset too, the comparison fails (a don't-care payload, ``desc.valid``
    low)."""
    with pytest.raises(AssertionError):
        _compare_every_cycle(5, 2, ref_cls=_RefWordReset, payload_always=True, resets="all")


def test_every_cycle_compare_can_fail():
    """The comparison sees a one-cycle difference (a FIFO one descriptor shallower)."""

    def shallower(**kw):
        return Dispatcher(**{**kw, "fifo_depth": 5})

    with pytest.raises(AssertionError):
        _compare_every_cycle(1, 2, new_cls=shallower, ops=4)


def test_parameters(assert_refused):
    assert_refused(lambda: Dispatcher(cols=0, d_depth=64, s_depth=64, c_depth=16), ValueError,
                   "Dispatcher: cols must be >= 1, not 0")
