"""sim.harness.CoreSim: the persistent C++ simulator process (batches, death, sentinels)."""

from __future__ import annotations

import numpy as np
import pytest

from sim import gemm, verilate
from sim.tb.driver import encode_words, pack_d, unpack_c

pytestmark = pytest.mark.slow


def _rand(rng, shape, density=1.0):
    a = rng.integers(-128, 128, shape).astype(np.int8)
    if density < 1:
        a[rng.random(shape) >= density] = 0
    return a


@pytest.fixture(scope="module")
def model8():
    return verilate.harness_model(8, 8)


def _batch(rng):
    return [
        (_rand(rng, (800, 600)), _rand(rng, (600, 70), 0.1)),
        (_rand(rng, (9, 20000)), _rand(rng, (20000, 9), 0.05)),
        (_rand(rng, (100, 64)), _rand(rng, (64, 1200), 0.1)),
    ]


def _same(a, b):
    assert np.array_equal(a.c, b.c)
    assert (a.cycles, a.busy_cycles, a.stall_cycles, a.idle_cycles, a.runs) == \
        (b.cycles, b.busy_cycles, b.stall_cycles, b.idle_cycles, b.runs)


def test_persistent_simulator_serves_batch_after_batch(model8):
    from sim.harness import CoreSim

    rng = np.random.default_rng(9)
    jobs = _batch(rng)
    ref = gemm.run_gemms(jobs, model=model8)
    with CoreSim(model8, label="test") as core:
        pid = core.pid
        for _ in range(2):
            again = gemm.run_gemms(jobs, sim=core)
            for a, b in zip(ref, again, strict=True):
                _same(a, b)
        assert core.pid == pid and core.alive
    assert core.proc is None


def test_dead_simulator_is_reported_with_what_it_was_doing(model8):
    import signal

    from sim.harness import CoreSim, SimulatorDied

    rng = np.random.default_rng(10)
    core = CoreSim(model8, label="test")
    try:
        core.proc.send_signal(signal.SIGKILL)
        core.proc.wait()
        with pytest.raises(SimulatorDied) as err:
            gemm.run_gemms(_batch(rng)[:1], sim=core, labels=["layer1:forward"])
        msg = str(err.value)
        assert f"simulator process {core.pid} [test]" in msg
        assert "killed by signal 9" in msg
        assert "at core operation 1 of 4: GEMM 0 (layer1:forward) shape (800, 600, 70)" in msg
    finally:
        core.close()


def test_an_interrupted_batch_stops_the_simulator_instead_of_hanging(model8):
    """Ctrl-C (here: an exception from ``progress``) while requests still stream: the writer
    thread is blocked on a full pipe and the simulator on its unread answers; the batch must
    stop the simulator and re-raise, not wait for the writer forever."""
    from sim.harness import CoreSim

    class Stop(Exception):
        pass

    def progress(done, total):
        raise Stop

    rng = np.random.default_rng(11)
    s = _rand(rng, (600, 70), 0.1)
    jobs = [(_rand(rng, (200, 600)), s) for _ in range(100)]  # 12 MB of D, 5.6 MB of C
    core = CoreSim(model8, label="test")
    try:
        with pytest.raises(Stop):
            gemm.run_gemms(jobs, sim=core, progress=progress)
        assert not core.alive
    finally:
        core.close()
    assert core.proc is None


def test_close_after_a_half_written_request_does_not_hang(model8):
    """Ctrl-C inside a large write (the trainer's first D blob): the simulator waits for the
    rest of the payload, so close() must not send it a quit and wait for the reply (both
    sides waited forever: CI's Ctrl-C test timed out so). The close runs in a thread, only so
    that the old behaviour fails the test instead of hanging the suite."""
    import threading

    from sim.harness import CoreSim

    class HalfWriter:  # writes half of each request, then is interrupted
        def __init__(self, pipe):
            self.pipe = pipe

        def write(self, data):
            self.pipe.write(data[: len(data) // 2])
            self.pipe.flush()
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.pipe, name)

    core = CoreSim(model8, label="test")
    proc = core.proc
    pipe = proc.stdin
    try:
        proc.stdin = HalfWriter(pipe)
        with pytest.raises(KeyboardInterrupt):
            core.write_d(np.zeros((4096, 8), dtype=np.int8))
        proc.stdin = pipe
        closing = threading.Thread(target=core.close, daemon=True)
        closing.start()
        closing.join(timeout=120)
        assert not closing.is_alive(), "close() hangs on a stream out of step"
        assert core.proc is None and proc.poll() is not None
    finally:
        proc.stdin = pipe
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_interrupted_start_leaves_no_simulator(model8, monkeypatch):
    """Ctrl-C while CoreSim waits for the simulator's first reply (its geometry): the
    constructor raises, so no caller could close it; it stops the process itself (was left
    running: an orphan after the trainer's Ctrl-C, and a 'still running' warning)."""
    from sim.harness import CoreSim

    procs = []

    def interrupted(self, doing):
        self._in_step = False  # as _recv does until the whole reply is read
        procs.append(self.proc)
        raise KeyboardInterrupt

    monkeypatch.setattr(CoreSim, "_recv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CoreSim(model8, label="test")
    (proc,) = procs
    try:
        assert proc.poll() is not None
        assert proc.stdin.closed and proc.stdout.closed and proc.stderr.closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_harness_sentinel_and_reset(model8):
    """C words outside an operation's result keep what was there (here a sentinel)."""
    from sim.harness import CoreSim

    rng = np.random.default_rng(11)
    d, s = _rand(rng, (10, 20)), _rand(rng, (20, 3), 0.5)
    sentinel = np.full(8, -0x5A5A5A5B, np.int32)
    with CoreSim(model8) as core:
        core.fill_c(sentinel)
        core.write_d(pack_d(d, 8))
        words = encode_words(s)
        core.write_s(words)
        st, c = core.run(10, 20, 3, len(words))
        assert st["error"] == 0 and c.shape == (2 * 3, 8)
        assert np.array_equal(unpack_c(c, 10, 3, 8), d.astype(np.int32) @ s.astype(np.int32))
        rest = core.read_c(core.c_depth - 6, base=6)
        assert (rest == sentinel).all()
        assert np.array_equal(core.read_c(6, ports=True), c)
        t = core.ticks
        core.reset()
        assert core.ticks == t + 3


def test_the_select_unit_changes_no_gemm(model8):
    """The core without the threshold-select unit (``sel_lanes=0``, what the compare job's
    run_gemms uses: sim.compare_models) gives the same cycles, counters and C as the harness
    core with the unit on the same GEMMs: dense, sparse, natural zeros, tiled in K and N, short
    and skinny, whole and cycles-only."""
    from sw import intref

    plain = verilate.harness_model(8, 8, sel_lanes=0)
    assert plain.attrs["sel_lanes"] == 0 and model8.attrs["sel_lanes"] > 0
    rng = np.random.default_rng(11)
    relu = _rand(rng, (300, 144))
    relu[relu < 0] = 0  # natural zeros in D
    jobs = [
        *_batch(rng),
        (relu, _rand(rng, (144, 32), 0.1)),
        (_rand(rng, (64, 256)), _rand(rng, (256, 10))),
        (_rand(rng, (10, 64), 0.5), _rand(rng, (64, 256), 0.9)),
        (_rand(rng, (3, 5)), _rand(rng, (5, 1))),
        (_rand(rng, (16, 40)), np.zeros((40, 8), np.int8)),
    ]
    for only in (False, True):
        a = gemm.run_gemms(jobs, model=plain, cycles_only=only)
        b = gemm.run_gemms(jobs, model=model8, cycles_only=only)
        for (d, s), ra, rb in zip(jobs, a, b, strict=True):
            _same(ra, rb)
            if not only:
                assert np.array_equal(ra.c, intref.gemm(d, s))


def _gate_workload(model, rng):
    """What a process reports for selects overlapped with GEMMs and refused commands (errors
    with ``done``), with the unit's clock gated or not (SWAT_SIM_SEL_GATE)."""
    from hw.contract.codes import SelectMode
    from sim.harness import CoreSim

    out = []
    s = _rand(rng, (40, 24))
    d = _rand(rng, (30, 40))
    sparse = s.copy()
    sparse[np.abs(sparse.astype(int)) < 100] = 0
    words = encode_words(sparse)
    with CoreSim(model) as core:
        core.write_d(pack_d(d, 8))
        core.write_s(words)
        for mode, kw in ((SelectMode.FULL, {"keep": 300}), (SelectMode.HELD, {}),
                         (SelectMode.HELD, {"transpose": True}),
                         (SelectMode.THRESHOLD, {"keep": 900}),
                         (SelectMode.FULL, {"keep": 5000}),  # KEEP: more than the matrix
                         (SelectMode.GIVEN, {"given": (200, 0, 0, 0, 0, 0)})):  # BAD_THRESHOLD
            core.select_begin(s, mode, bank=1, **kw)
            out.append(core.run(30, 40, 24, len(words)))  # overlapped with the select
            out.append(core.select_wait(check=False))
            for _ in range(3):  # the unit idle and quiet under GEMMs
                out.append(core.run(30, 40, 24, len(words)))
        core.reset()
        out.append(core.select(s, SelectMode.HELD, bank=1, check=False))  # NO_THRESHOLD
        out += [core.ticks, core.exposed_cycles]
    return out


def _same_reports(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple):  # a GEMM: counters and C
            assert x[0] == y[0] and np.array_equal(x[1], y[1])
        elif hasattr(x, "blob"):  # a select's report, its tick stamps and blob
            assert (x.blob is None) == (y.blob is None)
            if x.blob is not None:
                assert np.array_equal(x.blob, y.blob)
            assert {k: v for k, v in vars(x).items() if k != "blob"} == \
                {k: v for k, v in vars(y).items() if k != "blob"}
        else:
            assert x == y


def _gemm_gate_workload(model):
    """Select-only passes whose blobs the next GEMM reads (the S buffer written while the GEMM
    side's clock is stopped), GEMMs overlapped with selects, D and S written through the ports
    and directly, a reset: every report, with the core's clock gated or not
    (SWAT_SIM_GEMM_GATE)."""
    from hw.contract.codes import SelectMode
    from sim.harness import CoreSim

    rng = np.random.default_rng(21)
    out = []
    with CoreSim(model) as core:
        for i, (m, k, n) in enumerate(((30, 40, 24), (9, 300, 17), (64, 64, 64))):
            d, s = _rand(rng, (m, k)), _rand(rng, (k, n), 0.7)
            core.write_d(pack_d(d, 8), ports=i == 1)
            bank = i % 2
            for mode, kw in ((SelectMode.THRESHOLD, {"keep": s.size // 4, "read_blob": False}),
                             (SelectMode.FULL, {"keep": s.size // 3})):
                out.append(core.select(s, mode, bank=bank, check=False, **kw))  # alone
            blob = out[-1].blob
            out.append(core.run(m, k, n, len(blob), s_bank=bank))  # reads what the unit wrote
            core.select_begin(s, SelectMode.HELD, bank=1 - bank)  # beside the next GEMMs
            out.append(core.run(m, k, n, len(blob), s_bank=bank))
            out.append(core.select_wait(check=False))
            out.append(core.run(m, k, n, len(blob), s_bank=1 - bank))
            words = encode_words(np.where(np.abs(s.astype(int)) > 60, s, 0).astype(np.int8))
            core.write_s(words, ports=i == 2)  # the host's blob in buffer 0
            out.append(core.run(m, k, n, len(words)))
            out += [core.ticks, core.exposed_cycles]
        core.reset()
        out.append(core.select(s, SelectMode.FULL, keep=5, bank=0, check=False))
        out += [core.ticks, core.exposed_cycles]
        edges = core.gemm_edges
    return out, edges


def test_the_gated_gemm_clock_changes_nothing(model8, monkeypatch):
    """The harness stops the core's clock while the GEMM side is idle (``gemm_clock_gate``):
    every GEMM and select report (C, counters, blobs, cycles, tick stamps, the exposed-cycle
    counter) is what the same model gives with the core clocked at every edge, also when a
    GEMM reads a blob the unit wrote while that clock was stopped."""
    assert model8.params.get("gemm_clock_gate") is True
    monkeypatch.setenv("SWAT_SIM_GEMM_GATE", "0")
    always, all_edges = _gemm_gate_workload(model8)
    monkeypatch.setenv("SWAT_SIM_GEMM_GATE", "1")
    gated, edges = _gemm_gate_workload(model8)
    _same_reports(always, gated)
    assert all_edges == always[-2]  # every tick reached the GEMM side
    assert edges < 0.9 * all_edges  # the select-only cycles did not
    for r in gated:
        if isinstance(r, tuple):
            assert r[0]["error"] == 0 and r[0]["log_oob"] == 0
    monkeypatch.setenv("SWAT_SIM_SEL_GATE", "0")  # and with the unit clocked at every edge
    _same_reports(always, _gemm_gate_workload(model8)[0])


def test_the_gated_select_clock_changes_nothing(model8, monkeypatch):
    """The harness stops the select unit's clock while the unit is quiet (``sel_clock_gate``,
    ``sel_quiet``): every GEMM and select report (blobs, cycles, error codes, tick stamps, the
    exposed-cycle counter) is what the same model gives with the unit clocked at every edge."""
    assert model8.params.get("sel_clock_gate") is True
    rng = np.random.default_rng(12)
    monkeypatch.setenv("SWAT_SIM_SEL_GATE", "0")
    always = _gate_workload(model8, rng)
    monkeypatch.setenv("SWAT_SIM_SEL_GATE", "1")
    gated = _gate_workload(model8, np.random.default_rng(12))
    codes = [r.code_name for r in gated if hasattr(r, "blob")]
    assert codes == ["NONE", "NONE", "NONE", "NONE", "KEEP", "BAD_THRESHOLD", "NO_THRESHOLD"]
    _same_reports(always, gated)
