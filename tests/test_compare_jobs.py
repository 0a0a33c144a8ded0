"""sim.compare_jobs: a GEMM planned for the RTL keeps only what its runs need."""

from __future__ import annotations

import numpy as np
import pytest

from hw.contract.tiling import limits
from sim.compare_jobs import plan_gemm
from sw.lowering import GemmJob

LIM = limits(rows=8, cols=8, d_depth=256, s_depth=256, c_depth=64)


def _job(rng, m, k, n, density, label="l"):
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s_dense = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s_dense[rng.random((k, n)) < 0.05] = 0  # natural zeros
    s = np.where(rng.random((k, n)) < density, s_dense, 0).astype(np.int8)
    return GemmJob(layer=label, pass_name="forward", kind="linear", density=density, d=d, s=s,
                   s_dense=s_dense, scale=1.0, ref=np.zeros((m, n)))


def test_large_gemm_keeps_its_samples_only():
    rng = np.random.default_rng(0)
    job = _job(rng, 300, 600, 80, 0.2)
    d, s, s_dense = job.d, job.s, job.s_dense
    p = plan_gemm(job, LIM, 4, seed=0, truly_dense=True)
    assert job.d is None and job.s is None and job.s_dense is None and job.ref is None
    assert p.shape == (300, 600, 80) and p.label == "l:forward"
    assert p.nnz == np.count_nonzero(s) and p.nnz_dense == np.count_nonzero(s_dense)
    sp, dn, td = (p.kinds[k] for k in ("sparse", "dense", "truly_dense"))
    assert not sp.cycles_only and dn.cycles_only and td.cycles_only
    for (db, sb), i in zip(sp.subs, sp.sample.picked, strict=True):  # real operands
        mb, kb, nb = sp.sample.blocks[i]
        assert np.array_equal(db, d[mb, kb]) and np.array_equal(sb, s[kb, nb])
    assert len(sp.subs) == len(dn.subs) == 4
    assert all(not db.any() for db, _ in dn.subs)  # cycles only: no D values kept
    assert td.sample.operations > len(td.subs) and all(sb.all() for _, sb in td.subs)
    # equal baseline operands share a key (reused across sparsities), others do not
    again = plan_gemm(_job(np.random.default_rng(0), 300, 600, 80, 0.1), LIM, 4, seed=0,
                      truly_dense=True)
    other = plan_gemm(_job(np.random.default_rng(1), 300, 600, 80, 0.2), LIM, 4, seed=0,
                      truly_dense=True)
    assert again.kinds["dense"].share == dn.share != other.kinds["dense"].share
    assert again.kinds["truly_dense"].share == td.share == other.kinds["truly_dense"].share
    # the same seed and label pick the same operations, whatever the order of planning
    twin = plan_gemm(_job(np.random.default_rng(0), 300, 600, 80, 0.2), LIM, 4, seed=0,
                     truly_dense=True)
    assert np.array_equal(twin.kinds["sparse"].sample.picked, sp.sample.picked)


def test_small_gemm_runs_whole_and_keeps_its_operands():
    rng = np.random.default_rng(3)
    job = _job(rng, 16, 40, 8, 0.3)
    p = plan_gemm(job, LIM, 4, seed=0, truly_dense=False)
    assert job.d is not None and job.ref is not None
    assert set(p.kinds) == {"sparse", "dense"}
    assert p.kinds["sparse"].sample is None and p.kinds["sparse"].subs[0][0] is job.d


@pytest.mark.slow
def test_truly_dense_groups_give_the_rtl_cycles_of_the_whole_gemm():
    """One RTL run per block size times its count equals the whole GEMM run on the RTL."""
    from sim import gemm, verilate
    from sim.sampling import exact_groups, extrapolate

    model = verilate.harness_model(8, 8)
    lim = gemm._limits(model)
    m, k, n = 3000, 600, 40
    grp = exact_groups(m, k, n, lim)
    assert len(grp.sizes) > 1
    subs = grp.sub_jobs()
    whole = (np.ones((m, k), dtype=np.int8), np.ones((k, n), dtype=np.int8))
    res = gemm.run_gemms([whole, *subs], model=model, cycles_only=True)
    total, bound = extrapolate(grp, [r.cycles for r in res[1:]])
    assert bound == 0.0 and total == res[0].cycles
    assert grp.operations == res[0].runs
