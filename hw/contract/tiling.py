"""The host tiling planner: how a GEMM larger than the core's buffers becomes core operations.

The core holds ``d_depth`` D words (``ceil(M/rows)·K`` are needed), ``s_depth`` compressed-S
words (``4 + N + nnz``) and ``c_depth`` C words (``ceil(M/rows)·N``). :func:`plan` splits a
GEMM on the host:

* ``K`` into equal blocks of at most ``min(d_depth, s_cap - 5)`` rows (a block's single densest
  column, ``4 + 1 + K`` words, always fits), shortened when ``S`` is so dense that fewer than
  ``2·cols`` columns would fit one blob (a dense ``S`` would otherwise run one column at a time
  and idle most PE columns; never below 64 rows);
* the columns of each K block into greedy groups whose blob and C words fit;
* ``M`` into row blocks (multiples of ``rows``) that fit the D and C buffers.

Each block is one core operation; partial sums of K blocks are added on the host. The
simulator (``sim.gemm``) and the FPGA host driver (``hw.host_driver``) both use this planner,
so a GEMM is cut the same way on either.
"""

from __future__ import annotations

import numpy as np

__all__ = ["limits", "plan", "plan_for"]


def limits(*, rows: int, cols: int, d_depth: int, s_depth: int, c_depth: int,
           s_len_max: int = 0xFFFF) -> dict:
    """The buffer limits :func:`plan` reads: ``rows``, ``cols``, ``d``, ``s``, ``c`` and
    ``s_len_max`` (the largest ``s_len`` the shape register can hold)."""
    return {"rows": int(rows), "cols": int(cols), "d": int(d_depth), "s": int(s_depth),
            "c": int(c_depth), "s_len_max": int(s_len_max)}


def plan(m: int, k: int, n: int, col_nnz_fn, lim: dict) -> list[tuple[slice, slice, slice]]:
    """Blocks ``(mb, kb, nb)`` of ``C[M, N] += D[mb, kb] @ S[kb, nb]`` that each fit the
    buffers (see the module docstring).

    ``col_nnz_fn(kb)`` returns the non-zeros per column of ``S[kb, :]`` (length ``n``);
    ``lim`` comes from :func:`limits`.
    """
    rows = lim["rows"]
    s_cap = min(lim["s"], lim["s_len_max"])
    kmax = max(1, min(k, lim["d"], s_cap - 5, 0xFFFF))
    # dense columns: shorten the K blocks so that at least 2*cols columns fit one S blob,
    # otherwise a dense S would run one column at a time and idle most PE columns
    target = min(n, 2 * lim["cols"])
    dens_max = float(np.max(col_nnz_fn(slice(0, k)))) / k if k else 0.0
    if dens_max > 0:
        fit = int(((s_cap - 4) / target - 1) / dens_max)
        kmax = max(1, min(kmax, max(fit, 64)))
    nkb = -(-k // kmax)
    kmax = -(-k // nkb)  # equal blocks
    blocks = []
    for k0 in range(0, k, kmax):
        kb = slice(k0, min(k, k0 + kmax))
        klen = kb.stop - kb.start
        col_nnz = col_nnz_fn(kb)
        groups = []
        n0, used, cnt = 0, 0, 0
        for j in range(n):
            need = int(col_nnz[j]) + 1
            if cnt and (4 + used + need > s_cap or cnt + 1 > lim["c"] or cnt + 1 > 0xFFFF):
                groups.append(slice(n0, j))
                n0, used, cnt = j, 0, 0
            used += need
            cnt += 1
        groups.append(slice(n0, n))
        for nb in groups:
            ncols = nb.stop - nb.start
            mt = max(1, min(lim["d"] // klen, lim["c"] // ncols, 0xFFFF // rows))
            mrows = mt * rows
            for m0 in range(0, m, mrows):
                blocks.append((slice(m0, min(m, m0 + mrows)), kb, nb))
    return blocks


def plan_for(m: int, s, lim: dict) -> list[tuple[slice, slice, slice]]:
    """:func:`plan` for ``D[m, K] @ S`` with the non-zeros counted from ``S`` itself."""
    nz = np.asarray(s) != 0
    k, n = nz.shape
    return plan(m, k, n, lambda kb: nz[kb].sum(axis=0), lim)
