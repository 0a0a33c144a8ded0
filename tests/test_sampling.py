"""sim.sampling: the ratio estimator over sampled core operations."""

import numpy as np

from hw.contract.tiling import limits
from sim.sampling import Sample, extrapolate, sample_gemm

LIM = limits(rows=8, cols=8, d_depth=256, s_depth=256, c_depth=64)


def _s(rng, k, n, density):
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[rng.random((k, n)) >= density] = 0
    return s


def test_small_gemm_runs_whole():
    rng = np.random.default_rng(0)
    assert sample_gemm(8, _s(rng, 20, 8, 0.3), LIM, 4, rng) is None
    assert sample_gemm(800, _s(rng, 600, 80, 0.3), LIM, 0, rng) is None  # 0: never sample


def test_whole_runs_gemms_up_to_that_many_operations_whole():
    rng = np.random.default_rng(2)
    s = _s(rng, 600, 80, 0.3)
    ops = sample_gemm(200, s, LIM, 5, rng).operations
    assert sample_gemm(200, s, LIM, 5, rng, whole=ops) is None
    smp = sample_gemm(200, s, LIM, 5, rng, whole=ops - 1)  # one more: sampled, 5 of them
    assert smp.operations == ops and smp.picked.size == 5


def test_sample_covers_distinct_operations_and_sub_jobs_fit():
    rng = np.random.default_rng(1)
    s = _s(rng, 600, 80, 0.3)
    d = rng.integers(-128, 128, (200, 600)).astype(np.int8)
    smp = sample_gemm(200, s, LIM, 5, rng)
    assert smp.operations > 5 and len(set(smp.picked.tolist())) == 5
    for (db, sb), i in zip(smp.sub_jobs(d, s), smp.picked, strict=True):
        mb, kb, nb = smp.blocks[i]
        assert np.array_equal(db, d[mb, kb]) and np.array_equal(sb, s[kb, nb])
        assert -(-db.shape[0] // 8) * sb.shape[0] <= 256 and 4 + sb.shape[1] + \
            int((sb != 0).sum()) <= 256


def test_ratio_estimator():
    est = np.array([10.0, 20.0, 30.0, 40.0])
    # the RTL is the model times 1.5: the ratio estimator is exact, the bound 0
    smp = Sample(blocks=[None] * 4, estimates=est, picked=np.array([0, 2]))
    total, bound = extrapolate(smp, [15.0, 45.0])
    assert total == 150.0 and bound == 0.0
    # every operation sampled: the total is the sum, no sampling error
    smp = Sample(blocks=[None] * 4, estimates=est, picked=np.arange(4))
    total, bound = extrapolate(smp, [11.0, 19.0, 33.0, 41.0])
    assert total == 104.0 and bound == 0.0
    smp = Sample(blocks=[None] * 4, estimates=est, picked=np.array([0, 1, 2]))
    total, bound = extrapolate(smp, [11.0, 19.0, 33.0])
    assert bound > 0


def test_groups_of_an_all_nonzero_s_are_its_blocks_by_size():
    """exact_groups: the planner's blocks of a no-zero S counted by size; the total from one
    run per size is the sum over every block (here with the cycle model as the 'RTL')."""
    from hw.contract.cycles import schedule_cycles
    from hw.contract.tiling import plan
    from sim.sampling import exact_groups

    m, k, n = 300, 700, 50
    blocks = plan(m, k, n, lambda kb: np.full(n, kb.stop - kb.start), LIM)
    grp = exact_groups(m, k, n, LIM)
    assert grp.operations == len(blocks) > len(grp.sizes) > 1
    assert sorted(grp.sizes) == sorted({(b[0].stop - b[0].start, b[1].stop - b[1].start,
                                         b[2].stop - b[2].start) for b in blocks})
    subs = grp.sub_jobs()
    runs = [schedule_cycles(s, d.shape[0]) for d, s in subs]
    total, bound = extrapolate(grp, runs)
    ones = np.ones((k, n), dtype=np.int8)
    assert bound == 0.0
    assert total == sum(schedule_cycles(ones[kb, nb], mb.stop - mb.start) for mb, kb, nb in blocks)
    assert exact_groups(0, k, n, LIM) is None


def test_cycles_only_sub_jobs_share_zero_d_blocks():
    rng = np.random.default_rng(2)
    s = _s(rng, 600, 80, 0.3)
    smp = sample_gemm(200, s, LIM, 5, rng)
    subs = smp.sub_jobs(None, s)
    assert all(not d.any() and d.dtype == np.int8 for d, _ in subs)
    for (db, sb), i in zip(subs, smp.picked, strict=True):
        mb, kb, nb = smp.blocks[i]
        assert db.shape == (mb.stop - mb.start, kb.stop - kb.start)
        assert np.array_equal(sb, s[kb, nb])
