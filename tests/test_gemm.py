"""sim.run_gemm / run_gemms: the contract of docs/contract.md, batching, host-side tiling, the C++
harness engine against the cocotb one."""

from __future__ import annotations

import numpy as np
import pytest
from operands import rand_int8

import sim
from sim import gemm, verilate
from sim.tb.driver import encode_words, pack_d, unpack_c


def test_encoder_matches_sw_compress():
    from sw.compress import encode

    rng = np.random.default_rng(1)
    for _ in range(50):
        k, n = (int(x) for x in rng.integers(1, 40, 2))
        s = rand_int8(rng, (k, n), float(rng.random()))
        assert encode_words(s).astype("<u4").tobytes() == encode(s)


def test_pack_unpack_roundtrip():
    rng = np.random.default_rng(2)
    d = rand_int8(rng, (13, 7))
    w = pack_d(d, 4)
    assert w.shape == (4 * 7, 4)
    assert w[7 + 3, 1] == d[4 + 1, 3]  # word mt*K + k, lane i = D[mt*rows + i, k]
    c = np.arange(13 * 5, dtype=np.int32).reshape(13, 5)
    pad = np.zeros((16, 5), np.int32)
    pad[:13] = c
    words = pad.reshape(4, 4, 5).transpose(0, 2, 1).reshape(20, 4)
    assert np.array_equal(unpack_c(words, 13, 5, 4), c)


def test_plan_fits_the_buffers():
    lim = {"rows": 8, "cols": 8, "d": 4608, "s": 8192, "c": 512, "s_len_max": 16383}
    rng = np.random.default_rng(3)
    for m, k, n, dens in [(1024, 576, 64, 0.1), (64, 4608, 512, 1.0), (16, 9000, 3, 0.5),
                          (8, 10, 600, 1.0)]:
        nz = rng.random((k, n)) < dens
        blocks = gemm.plan(m, k, n, lambda kb, nz=nz: nz[kb].sum(axis=0), lim)
        cover = np.zeros((m, k, n), dtype=np.int8) if m * k * n < 5e6 else None
        for mb, kb, nb in blocks:
            mt = -(-(mb.stop - mb.start) // 8)
            assert mt * (kb.stop - kb.start) <= lim["d"]
            assert mt * (nb.stop - nb.start) <= lim["c"]
            assert 4 + (nb.stop - nb.start) + int(nz[kb, nb].sum()) <= lim["s"]
            if cover is not None:
                cover[mb, kb, nb] += 1
        if cover is not None:
            assert (cover == 1).all()


@pytest.fixture(scope="session")
def model8():
    return verilate.harness_model(8, 8)


@pytest.mark.slow
def test_run_gemm_contract(model8):
    """The docs/contract.md example: int32 C bit-exact with the int64 product, cycles, macs."""
    rng = np.random.default_rng(4)
    d = rand_int8(rng, (19, 70))
    s = rand_int8(rng, (70, 21), 0.15)
    r = sim.run_gemm(d, s)
    assert r.c.dtype == np.int32 and r.c.shape == (19, 21)
    assert np.array_equal(r.c.astype(np.int64), d.astype(np.int64) @ s.astype(np.int64))
    assert r.macs == 19 * int((s != 0).sum())
    assert r.cycles >= r.macs / 64
    assert 0 < r.utilization <= 1
    assert r.busy_cycles == 3 * int((s != 0).sum())  # ceil(19/8) M-tiles


@pytest.mark.slow
def test_batch_with_tiling_and_edge_cases(model8):
    """One simulator run: tiled shapes (M, K and N beyond the buffers), empty and dense S."""
    rng = np.random.default_rng(5)
    jobs = [
        (rand_int8(rng, (800, 600)), rand_int8(rng, (600, 70), 0.1)),  # M tiles beyond c/d depth
        (rand_int8(rng, (9, 20000)), rand_int8(rng, (20000, 9), 0.05)),  # K beyond d_depth
        (rand_int8(rng, (8, 64)), rand_int8(rng, (64, 600), 0.3)),  # N beyond c_depth
        # N beyond c_depth with M > rows: the column groups get M blocks of different height
        (rand_int8(rng, (100, 64)), rand_int8(rng, (64, 1200), 0.1)),
        (rand_int8(rng, (16, 300)), rand_int8(rng, (300, 40))),  # dense S: more than one blob
        (rand_int8(rng, (5, 7)), np.zeros((7, 3), np.int8)),  # all-zero S
        (np.full((9, 33), -128, np.int8), np.full((33, 9), -128, np.int8)),
        (rand_int8(rng, (0, 4)), rand_int8(rng, (4, 4))),  # empty M
    ]
    res = gemm.run_gemms(jobs, model=model8)
    assert res.stats.preload == [True, True, True]
    assert res.stats.jobs == len(jobs) and res.stats.runs == sum(r.runs for r in res)
    for (d, s), r in zip(jobs, res, strict=True):
        ref = d.astype(np.int64) @ s.astype(np.int64)
        assert np.array_equal(r.c.astype(np.int64), ref), r.shape
    assert res[0].runs > 1 and res[1].runs > 1 and res[2].runs > 1 and res[3].runs > 1
    assert res[5].macs == 0


@pytest.mark.slow
def test_ports_mode_gives_the_same_cycles(model8):
    rng = np.random.default_rng(6)
    d, s = rand_int8(rng, (16, 40)), rand_int8(rng, (40, 16), 0.3)
    a = gemm.run_gemm(d, s, model=model8)
    batch = gemm.run_gemms([(d, s)], model=model8, mode="ports")
    b = batch[0]
    assert batch.stats.preload == [False, False, False]
    assert np.array_equal(a.c, b.c)
    assert (a.cycles, a.busy_cycles, a.stall_cycles) == (b.cycles, b.busy_cycles, b.stall_cycles)


def test_rejects_bad_operands():
    with pytest.raises(TypeError):
        gemm.run_gemms([(np.zeros((2, 2), np.int16), np.zeros((2, 2), np.int8))],
                       model=object())
    with pytest.raises(ValueError):
        gemm.run_gemms([(np.zeros((2, 3), np.int8), np.zeros((2, 2), np.int8))],
                       model=object())


@pytest.mark.slow
def test_cycles_only_counts_the_same_cycles(model8):
    """The dense baselines skip M blocks that repeat an S block: the cycle count is unchanged."""
    rng = np.random.default_rng(7)
    jobs = [(rand_int8(rng, (300, 500)), rand_int8(rng, (500, 40), 0.7)),
            (rand_int8(rng, (700, 200)), rand_int8(rng, (200, 20)))]
    full = gemm.run_gemms(jobs, model=model8)
    fast = gemm.run_gemms(jobs, model=model8, cycles_only=True)
    for a, b in zip(full, fast, strict=True):
        assert a.runs == b.runs > 1
        assert (a.cycles, a.busy_cycles, a.stall_cycles, a.idle_cycles) == \
            (b.cycles, b.busy_cycles, b.stall_cycles, b.idle_cycles)
        assert b.cycles_only and not a.cycles_only

    # the cycle model of a GEMM without simulating it: the sum run_gemms reports
    assert gemm.model_cycles(jobs, model8) == [r.model_cycles for r in full]
    assert all(r.model_cycles > 0 for r in full)


def _batch(rng):
    return [
        (rand_int8(rng, (800, 600)), rand_int8(rng, (600, 70), 0.1)),
        (rand_int8(rng, (9, 20000)), rand_int8(rng, (20000, 9), 0.05)),
        (rand_int8(rng, (100, 64)), rand_int8(rng, (64, 1200), 0.1)),
        (rand_int8(rng, (16, 300)), rand_int8(rng, (300, 40))),
        (np.full((9, 33), -128, np.int8), np.full((33, 9), 127, np.int8)),
    ]


def _same(a, b):
    assert np.array_equal(a.c, b.c)
    assert (a.cycles, a.busy_cycles, a.stall_cycles, a.idle_cycles, a.runs) == \
        (b.cycles, b.busy_cycles, b.stall_cycles, b.idle_cycles, b.runs)


@pytest.mark.slow
@pytest.mark.xdist_group("sim-core")
def test_harness_equals_the_cocotb_engine(model8):
    """The C++ loop and the cocotb bench drive the same core: identical C and counters."""
    jobs = _batch(np.random.default_rng(8))
    fast = gemm.run_gemms(jobs, model=model8)
    assert fast.stats.engine == "harness"
    assert fast.stats.cycles >= sum(r.cycles for r in fast)
    slow = gemm.run_gemms(jobs, model=verilate.core_model(8, 8), engine="cocotb")
    assert slow.stats.engine == "cocotb"
    for a, b in zip(fast, slow, strict=True):
        _same(a, b)


@pytest.mark.slow
def test_waves_of_one_gemm(tmp_path):
    rng = np.random.default_rng(12)
    d, s = rand_int8(rng, (20, 30)), rand_int8(rng, (30, 9), 0.3)
    wave = tmp_path / "w" / "gemm.fst"
    r = gemm.dump_waves(d, s, wave)
    assert np.array_equal(r.c.astype(np.int64), d.astype(np.int64) @ s.astype(np.int64))
    assert r.cycles == sim.run_gemm(d, s).cycles
    assert wave.stat().st_size > 1000
