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

from hw.contract.cycles import schedule_cycles_many
from hw.contract.tiling import plan, plan_for

__all__ = ["Sample", "Groups", "sample_gemm", "exact_groups", "extrapolate"]


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
        """``[(D block, S block)]`` of the sampled operations (each fits the buffers); ``d``
        ``None``: zero ``D`` blocks (for a cycles-only run: the core's timing does not depend on
        ``D``'s values), one array per block size."""
        out, zeros = [], {}
        for i in self.picked:
            mb, kb, nb = self.blocks[i]
            if d is None:
                shape = (mb.stop - mb.start, kb.stop - kb.start)
                db = zeros.setdefault(shape, np.zeros(shape, dtype=np.int8))
            else:
                db = np.ascontiguousarray(d[mb, kb])
            out.append((db, np.ascontiguousarray(s[kb, nb])))
        return out


@dataclasses.dataclass
class Groups:
    """The core operations of a GEMM whose ``S`` has no zero: every block of the same size
    (M rows, K, N) takes the same cycles, so one run per distinct size gives the exact total."""

    sizes: list  # [(m rows, k, n)] distinct block sizes
    mults: list  # operations of each size

    @property
    def operations(self) -> int:
        return sum(self.mults)

    @property
    def picked(self):
        return range(len(self.sizes))

    def sub_jobs(self):
        """``[(zero D block, all-ones S block)]``, one per distinct size."""
        return [(np.zeros((m, k), dtype=np.int8), np.ones((k, n), dtype=np.int8))
                for m, k, n in self.sizes]


def exact_groups(m: int, k: int, n: int, lim: dict) -> Groups | None:
    """:class:`Groups` of ``D[m, k] @ S[k, n]`` with every element of ``S`` non-zero (``None``
    for an empty GEMM)."""
    if m == 0 or k == 0 or n == 0:
        return None
    count: dict = {}
    for mb, kb, nb in plan(m, k, n, lambda kb: np.full(n, kb.stop - kb.start), lim):
        key = (mb.stop - mb.start, kb.stop - kb.start, nb.stop - nb.start)
        count[key] = count.get(key, 0) + 1
    return Groups(list(count), list(count.values()))


def sample_gemm(m: int, s, lim: dict, n_max: int, rng, whole: int = 0) -> Sample | None:
    """A :class:`Sample` of ``n_max`` operations of ``D[m, K] @ S``, or ``None`` when the GEMM
    has at most ``max(n_max, whole)`` operations (or ``n_max`` is 0) and runs whole."""
    s = np.asarray(s)
    if not n_max or m == 0 or 0 in s.shape:
        return None
    blocks = plan_for(m, s, lim)
    if len(blocks) <= max(n_max, whole):
        return None
    # M blocks of equal height over the same S block have the same estimate: one each
    nz, col_sums, uniq, which = s != 0, {}, {}, []
    for mb, kb, nb in blocks:
        key = (kb.start, kb.stop, nb.start, nb.stop, mb.stop - mb.start)
        if key not in uniq:
            if kb.start not in col_sums:
                col_sums[kb.start] = nz[kb].sum(axis=0)
            uniq[key] = len(uniq)
        which.append(uniq[key])
    est = schedule_cycles_many([col_sums[k0][n0:n1] for k0, _k1, n0, n1, _m in uniq],
                               [key[4] for key in uniq], lim["rows"], lim["cols"])
    est = est.astype(np.float64)[np.array(which)]
    picked = np.sort(rng.choice(len(blocks), size=n_max, replace=False))
    return Sample(blocks, est, picked)


def extrapolate(sample: Sample, rtl_cycles) -> tuple[float, float]:
    """``(total cycles, 95 % bound)`` of the whole GEMM from the RTL cycles of the sample
    (for :class:`Groups`: the exact total, bound 0)."""
    y = np.asarray(rtl_cycles, dtype=np.float64)
    if isinstance(sample, Groups):
        return float(np.dot(y, sample.mults)), 0.0
    x = sample.estimates[sample.picked]
    n, big_n = len(y), sample.operations
    ratio = float(y.sum() / x.sum()) if x.sum() else 1.0
    total = ratio * float(sample.estimates.sum())
    if n < 2:
        return total, float("inf")
    resid = y - ratio * x
    var = (1 - n / big_n) / n * float((resid ** 2).sum()) / (n - 1)
    return total, 1.96 * big_n * math.sqrt(var)
