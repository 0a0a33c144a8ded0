"""Cycles of a GEMM too large to simulate whole: a random sample of its core operations on the
RTL, the rest extrapolated with the cycle model calibrated on that sample.

A GEMM becomes core operations by the host planner (:func:`hw.contract.tiling.plan`); the
cycles of one operation depend on its ``S`` block and the number of M-tiles only. For every
operation the schedule model (:func:`hw.contract.cycles.schedule_cycles`) gives an estimate
``x_i``; a simple random sample of ``n`` of the ``N`` operations runs on the RTL (``y_i``). The
total is the ratio estimator ``T = (Σ_s y / Σ_s x) · Σ_all x``, which is exact when the model is
off by a constant factor and unbiased to first order otherwise. Its 95 % bound is
``1.96 · N · sqrt((1 − n/N) / n · Σ_s (y − R x)² / (n − 1))`` (the ratio estimator's standard
error with the finite-population correction); the report gives it per GEMM.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hw.contract.cycles import schedule_cycles
from hw.contract.tiling import plan_for

__all__ = ["Sample", "sample_gemm", "extrapolate"]


@dataclasses.dataclass
class Sample:
    """The core operations of one GEMM, the estimate of each, and the sampled ones."""

    blocks: list  # [(mb, kb, nb)] of the whole GEMM
    estimates: np.ndarray  # schedule_cycles of every block
    picked: np.ndarray  # indices of the blocks simulated on the RTL

    @property
    def operations(self) -> int:
        return len(self.blocks)

    def sub_jobs(self, d, s):
        """``[(D block, S block)]`` of the sampled operations (each fits the buffers)."""
        out = []
        for i in self.picked:
            mb, kb, nb = self.blocks[i]
            out.append((np.ascontiguousarray(d[mb, kb]), np.ascontiguousarray(s[kb, nb])))
        return out


def sample_gemm(m: int, s, lim: dict, n_max: int, rng) -> Sample | None:
    """A :class:`Sample` of ``n_max`` operations of ``D[m, K] @ S``, or ``None`` when the GEMM
    has at most ``n_max`` operations (or ``n_max`` is 0) and runs whole."""
    s = np.asarray(s)
    if not n_max or m == 0 or 0 in s.shape:
        return None
    blocks = plan_for(m, s, lim)
    if len(blocks) <= n_max:
        return None
    est = np.array([schedule_cycles(s[kb, nb], mb.stop - mb.start, lim["rows"], lim["cols"])
                    for mb, kb, nb in blocks], dtype=np.float64)
    picked = np.sort(rng.choice(len(blocks), size=n_max, replace=False))
    return Sample(blocks, est, picked)


def extrapolate(sample: Sample, rtl_cycles) -> tuple[float, float]:
    """``(total cycles, 95 % bound)`` of the whole GEMM from the RTL cycles of the sample."""
    y = np.asarray(rtl_cycles, dtype=np.float64)
    x = sample.estimates[sample.picked]
    n, big_n = len(y), sample.operations
    ratio = float(y.sum() / x.sum()) if x.sum() else 1.0
    total = ratio * float(sample.estimates.sum())
    if n < 2:
        return total, float("inf")
    resid = y - ratio * x
    var = (1 - n / big_n) / n * float((resid ** 2).sum()) / (n - 1)
    return total, 1.96 * big_n * math.sqrt(var)
