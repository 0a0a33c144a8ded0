"""The compare job's GEMMs as the RTL runs need them: whole, or only their sampled blocks.

A ResNet-50 step at batch 32 lowers to int8 operands of several gigabytes (im2col of every
convolution, three operand kinds per GEMM), and its float tensors to about 25 GB; the core runs
48 core operations of each large GEMM. :func:`plan_gemm` therefore turns a lowered
:class:`sw.lowering.GemmJob` into a :class:`PlannedGemm` right after its layer was lowered: for
each operand kind (``sparse``: with Top-K; ``dense``: without Top-K, natural zeros kept;
``truly_dense``: no zero at all) either the whole GEMM or the blocks of its sampled core
operations (:mod:`sim.sampling`), and the job's big operands are dropped unless the GEMM runs
whole. Cycles-only kinds keep no ``D`` values (the core's timing does not depend on them).

Two baselines need not be simulated per sparsity: ``truly_dense`` depends on the shape only,
and an all-non-zero ``S`` makes every block of a given size take the same cycles, so its cycles
are exact from one run per distinct block size (:class:`sim.sampling.Groups`); ``dense`` of the
forward and input-gradient passes is ``W`` without Top-K, the same at every sparsity. Each kind
carries a ``share`` key (shape, or a digest of the operands) under which the job keeps results
across sparsities.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib

import numpy as np

from .sampling import exact_groups, sample_gemm

__all__ = ["KIND_NAMES", "KindPlan", "PlannedGemm", "plan_gemm"]

#: Operand kinds of a GEMM, in the order the job runs them.
KIND_NAMES = ("sparse", "dense", "truly_dense")


@dataclasses.dataclass(eq=False)
class KindPlan:
    """One operand kind of a GEMM: ``subs`` ``[(D, S)]`` to run (the whole GEMM, sampled
    blocks, or one block per distinct size), ``sample`` (``None`` when whole), ``share`` (key
    under which equal operands reuse results across sparsities) and ``cycles_only``."""

    subs: list
    sample: object = None
    share: tuple | None = None
    cycles_only: bool = False


@dataclasses.dataclass(eq=False)
class PlannedGemm:
    """A :class:`~sw.lowering.GemmJob` with its runs planned; attributes not defined here are
    the job's (``layer``, ``pass_name``, ``label``, ``density``, ``select_*``, ``rel_err``).
    ``job.d``, ``job.s``, ``job.s_dense``, ``job.ref`` are ``None`` unless the sparse GEMM runs
    whole (or ``keep`` asked for them)."""

    job: object
    shape: tuple
    nnz: int
    nnz_dense: int
    kinds: dict
    select: object = None  # sim.select_sampled.SampledSelect of a sampled sparse GEMM

    def __getattr__(self, name):
        if name == "job":  # not yet set (copy, pickle)
            raise AttributeError(name)
        return getattr(self.job, name)


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _rng(seed: int, label: str, kind: str):
    """A generator per GEMM and kind, independent of the order layers are lowered in."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), KIND_NAMES.index(kind)])


def plan_gemm(job, lim: dict, n_max: int, seed: int, *, truly_dense: bool,
              keep: bool = False, n_base: int | None = None,
              n_whole: int = 0) -> PlannedGemm:
    """Plan the RTL runs of ``job`` (module docstring): at most ``n_max`` sampled operations
    of the sparse GEMM (whole when it has at most ``max(n_max, n_whole)``) and ``n_base``
    (default ``n_max``) of each baseline (0: whole); ``keep`` keeps its operands."""
    n_base = n_max if n_base is None else n_base
    m, k, n = job.shape
    kinds = {}
    s_td = None
    for kind in KIND_NAMES if truly_dense else KIND_NAMES[:2]:
        only = kind != "sparse"
        if kind == "truly_dense":
            grp = exact_groups(m, k, n, lim)  # exact for every model: one run per block shape
            if grp is not None:
                kinds[kind] = KindPlan(grp.sub_jobs(), grp, ("truly_dense", m, k, n), True)
                continue
            s_td = np.where(job.s_dense == 0, 1, job.s_dense).astype(np.int8)
        s = {"sparse": job.s, "dense": job.s_dense, "truly_dense": s_td}[kind]
        smp = sample_gemm(m, s, lim, n_base if only else n_max, _rng(seed, job.label, kind),
                          whole=0 if only else n_whole)
        if smp is None:
            subs = [(job.d, s)]
        else:
            subs = smp.sub_jobs(None if only else job.d, s)
        share = ("dense", m, _digest(s)) if kind == "dense" else None
        kinds[kind] = KindPlan(subs, smp, share, only)
    out = PlannedGemm(job=job, shape=(m, k, n), nnz=int(np.count_nonzero(job.s)),
                      nnz_dense=int(np.count_nonzero(job.s_dense)), kinds=kinds)
    if kinds["sparse"].sample is not None:  # its blobs: sim.select_sampled
        from .select_sampled import keep as keep_select

        out.select = keep_select(job, kinds["sparse"].sample, seed)
    if not keep and kinds["sparse"].sample is not None:
        job.d = job.s = job.s_dense = job.ref = job.s_golden = None
        if getattr(job, "select_src", None) is not None:  # the whole quantized A: not needed
            job.select_src = None
    return out
