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
