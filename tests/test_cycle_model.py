"""The cycle model (``hw.contract.cycles.schedule_cycles``) against the RTL (the Verilator model
of the 8x8 core through ``sim.gemm.run_gemms``): exact (the issue asks for 3 %) on the GEMM
shapes of the compare job (the digits CNN's three passes per layer) and of its sparsity sweep
(64x576 @ 576x64), with S drawn like SWAT's Top-K (unstructured, so column lengths vary) and
with skewed columns."""

from __future__ import annotations

import numpy as np
import pytest

from sim import gemm

#: (M, K, N) of the digits CNN's GEMMs (forward, input gradient, weight gradient per layer)
DIGITS = [(4096, 9, 16), (16, 4096, 9), (4096, 144, 32), (4096, 32, 144), (32, 4096, 144),
          (1024, 288, 64), (1024, 64, 288), (64, 1024, 288), (64, 256, 10), (64, 10, 256),
          (10, 64, 256)]
SWEEP = [(64, 576, 64, d) for d in (1.0, 0.5, 0.2, 0.1, 0.05)]


def _s(rng, k, n, density, skew):
    s = rng.integers(-127, 128, (k, n)).astype(np.int8)
    s[s == 0] = 1
    if skew:  # a few long columns among short ones
        p = np.where(np.arange(n) % 7 == 0, min(1.0, 5 * density), density / 2)
        s[rng.random((k, n)) >= p[None, :]] = 0
    else:
        s[rng.random((k, n)) >= density] = 0
    return s


@pytest.mark.parametrize("skew", [False, True])
def test_model_is_exact(skew):
    rng = np.random.default_rng(11 + skew)
    shapes = [(m, k, n, 0.1) for m, k, n in DIGITS] + SWEEP
    jobs = [(rng.integers(-127, 128, (m, k)).astype(np.int8), _s(rng, k, n, dens, skew))
            for m, k, n, dens in shapes]
    res = gemm.run_gemms(jobs)
    for (m, k, n, dens), r, (d, s) in zip(shapes, res, jobs, strict=True):
        assert np.array_equal(r.c.astype(np.int64), d.astype(np.int64) @ s.astype(np.int64))
        assert r.model_cycles == r.cycles, ((m, k, n, dens), r.cycles, r.model_cycles)
