"""``sim.run_gemm``: one sparse GEMM ``C = D @ S`` on the Verilator model of the core.

>>> import numpy as np, sim
>>> d = np.random.randint(-128, 128, (16, 64), dtype=np.int8)
>>> s = np.random.randint(-128, 128, (64, 24), dtype=np.int8)
>>> s[np.random.rand(*s.shape) < 0.9] = 0
>>> r = sim.run_gemm(d, s)                        # builds (or reuses) the 8x8 model
>>> bool((r.c == d.astype(np.int64) @ s.astype(np.int64)).all())
True

The model is built on first use (``sim.verilate``, cached under ``build/sim``), so nothing but
``pip install -e .`` is needed. :func:`run_gemms` runs many GEMMs in *one* simulator process
(starting the simulator costs ~1-2 s): the operands go to the cocotb bench
(``sim/tb/cocotb_gemm.py``) in an ``.npz`` file named by environment variables, and the results
come back the same way.

Host-side tiling
----------------
GEMMs larger than the core's buffers are split on the host by the contract's planner
(:func:`hw.contract.tiling.plan`, re-exported here as ``plan``). Each block is one core
operation; partial sums of K blocks are added on the host. ``cycles`` and the busy/stall/idle
counters are the sums over the operations (the cost of reloading buffers between operations is
not counted: the core's counter runs from ``start`` to ``done``). ``runs`` says how many
operations it took.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.contract.blob import encode_words
from hw.contract.cycles import ideal_cycles, mac_bound_cycles, schedule_cycles, schedule_cycles_many
from hw.contract.tiling import limits, plan
from hw.contract.words import pack_d, unpack_c
from hw.core_port_names import FLAT_NAMES

from . import compare_args, verilate
from .bench import REWRITE_ENV, SimulationError, run_bench

__all__ = ["GemmResult", "BatchStats", "GemmBatch", "SimulationError", "run_gemm", "run_gemms",
           "run_raw", "plan"]


@dataclass
class GemmResult:
    """Result of one GEMM on the RTL model."""

    c: np.ndarray  # int32 [M, N]
    cycles: int  # core clock cycles, start to done, summed over the operations
    macs: int  # effectual MACs: M * nnz(S)
    busy_cycles: int = 0  # sum over PE columns of cycles issuing an effectual entry
    stall_cycles: int = 0  # ... with work but not issuing
    idle_cycles: int = 0  # ... with no work left
    runs: int = 1  # core operations (more than one when tiled)
    rows: int = 8
    cols: int = 8
    shape: tuple = ()  # (M, K, N)
    nnz: int = 0
    error_code: int = 0
    cycles_only: bool = False  # C was not computed (see run_gemms)
    model_cycles: int = 0  # hw.contract.cycles.schedule_cycles summed over the operations

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def ideal_cycles(self) -> float:
        """Dataflow bound ``ceil(M/rows) · nnz / cols`` (``hw.contract.cycles``)."""
        return ideal_cycles(self.shape[0], self.nnz, self.rows, self.cols) if self.shape else 0.0

    @property
    def mac_bound_cycles(self) -> float:
        """MAC bound ``macs / PEs``, the reference of :attr:`utilization`."""
        return mac_bound_cycles(self.macs, self.pes)

    @property
    def utilization(self) -> float:
        """``macs / (PEs · cycles)``."""
        return self.macs / (self.pes * self.cycles) if self.cycles else 0.0

    @property
    def density(self) -> float:
        k, n = self.shape[1], self.shape[2]
        return self.nnz / (k * n) if k * n else 0.0


@dataclass
class BatchStats:
    """Timing of one :func:`run_gemms` call (over all its simulator processes)."""

    jobs: int = 0
    runs: int = 0
    cycles: int = 0  # clock cycles simulated (core operations, resets, port accesses)
    wall: float = 0.0  # whole call, incl. planning, packing and simulator start
    bench: float = 0.0  # wall time of the simulation (first request to last answer)
    io: float = 0.0  # of which buffer preload / readback (cocotb engine only; inside for C++)
    cpu: float = 0.0  # CPU seconds of the simulator processes
    cpu_io: float = 0.0  # of which buffer preload / readback (cocotb engine only)
    preload: list = field(default_factory=list)
    engine: str = "harness"  # "harness" (C++ loop) or "cocotb"
    processes: list = field(default_factory=list)  # per simulator process: cycles, wall, cpu
    lost_workers: list = field(default_factory=list)  # Dask workers that died (work rerun)

    @property
    def cycles_per_second(self) -> float:
        """Simulated cycles per wall second of *one* simulator process, preload included
        (cycles / wall of each process, averaged over the processes weighted by cycles)."""
        procs = [p for p in self.processes if p["wall"] > 0]
        if procs:
            return sum(p["cycles"] for p in procs) / sum(p["wall"] for p in procs)
        t = self.bench - self.io
        return self.cycles / t if t > 0 else float("nan")

    @property
    def aggregate_cycles_per_second(self) -> float:
        """Simulated cycles per wall second of the whole simulation (all processes)."""
        return self.cycles / self.bench if self.bench > 0 else float("nan")

    @property
    def cycles_per_cpu_second(self) -> float:
        """Simulated core cycles per CPU second of the simulator (robust on a shared machine)."""
        t = self.cpu - self.cpu_io
        return self.cycles / t if t > 0 else float("nan")


class GemmBatch(list):
    """What :func:`run_gemms` returns: the list of :class:`GemmResult` (one per job, in order)
    with the :class:`BatchStats` of the simulator invocation as ``stats``."""

    def __init__(self, results, stats: BatchStats):
        super().__init__(results)
        self.stats = stats


# --------------------------------------------------------------------------------------------
# planning


def _limits(model) -> dict:
    a = model.attrs
    return limits(rows=a["rows"], cols=a.get("cols", 1), d_depth=a["d_depth"],
                  s_depth=a["s_depth"], c_depth=a["c_depth"],
                  s_len_max=(1 << model.ports.get(FLAT_NAMES["s_len"], 32)) - 1)


def _encode(s_block: np.ndarray) -> np.ndarray:
    return encode_words(s_block)


# --------------------------------------------------------------------------------------------
# the simulator invocation


def simulate(model, runs: np.ndarray, d_blobs: dict, s_blobs: dict, *, mode: str = "auto",
             progress=None, sim=None, parallel=None, describe=None):
    """Run ``runs`` (``[R, 7]``: m, k, n, d_id, s_id, s_len, read_c) on the core.

    On a harness model (:mod:`sim.harness`): in ``sim`` (a running :class:`~sim.harness.CoreSim`)
    or a simulator process started for the call, or spread over a Dask cluster when
    ``parallel`` is given (see :func:`sim.cluster.run_distributed`). On a cocotb model: in one
    cocotb simulator process (:func:`simulate_cocotb`). Returns ``(stats [R, 6], {run: C
    words}, info dict)``. ``progress(runs_done)`` is called while the simulator runs.
    """
    if model.kind == "cocotb":
        return simulate_cocotb(model, runs, d_blobs, s_blobs, mode=mode, progress=progress)
    ports = mode == "ports"
    if parallel is not None and len(runs) > 1:
        from . import cluster

        return cluster.run_distributed(model, runs, d_blobs, s_blobs, parallel, ports=ports,
                                       progress=progress)
    from .harness import CoreSim

    own = sim is None
    core = CoreSim(model) if own else sim
    try:
        stats, cs, info = core.run_ops(runs, d_blobs, s_blobs, ports=ports, progress=progress,
                                       describe=describe)
    finally:
        if own:
            core.close()
    proc = {"cycles": info["ticks"], "wall": info["wall"], "cpu": info["cpu"],
            "runs": len(runs), "pid": core.pid if not own else None}
    return stats, cs, {"bench": info["wall"], "io": 0.0, "cpu": info["cpu"], "cpu_io": 0.0,
                       "preload": [not ports] * 3, "ticks": info["ticks"],
                       "processes": [proc], "lost_workers": []}


def simulate_cocotb(model, runs: np.ndarray, d_blobs: dict, s_blobs: dict, *,
                    mode: str = "auto", module: str = "sim.tb.cocotb_gemm",
                    extra_env: dict | None = None, keep: bool = False, progress=None):
    """:func:`simulate` through the cocotb bench ``sim/tb/cocotb_gemm.py`` (one process)."""
    root = verilate.build_root() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gemm-", dir=root))
    try:
        jobs = tmp / "jobs.npz"
        out = tmp / "out.npz"
        arrays = {"runs": np.asarray(runs, dtype=np.int64).reshape(-1, 7)}
        arrays.update({f"d_{i}": v for i, v in d_blobs.items()})
        arrays.update({f"s_{i}": v for i, v in s_blobs.items()})
        np.savez(jobs, **arrays)
        env = {"SWAT_TB_JOBS": str(jobs), "SWAT_TB_OUT": str(out), "SWAT_TB_MODE": mode}
        env.update(extra_env or {})
        if progress is None:
            res = run_bench(model, module, env, workdir=tmp)
        else:
            import concurrent.futures

            prog = tmp / "progress"
            env["SWAT_TB_PROGRESS"] = str(prog)
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                fut = ex.submit(run_bench, model, module, env, workdir=tmp)
                while True:
                    try:
                        res = fut.result(timeout=0.3)
                        break
                    except concurrent.futures.TimeoutError:
                        try:
                            done_runs = int(prog.read_text().split()[0])
                        except (OSError, ValueError, IndexError):
                            continue
                        progress(done_runs)
            progress(len(arrays["runs"]))
        if res.failed or not out.exists():
            raise SimulationError(
                f"the GEMM bench failed:\n{res.summary()}\nlog tail:\n{res.log[-4000:]}")
        with np.load(out) as data:
            stats = data["stats"]
            cs = {int(key[2:]): data[key] for key in data.files if key.startswith("c_")}
            info = {"bench": float(data["wall"]), "io": float(data["io"]),
                    "cpu": float(data["cpu"]), "cpu_io": float(data["cpu_io"]),
                    "preload": data["preload"].tolist()}
        return stats, cs, info
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _model(rows, cols, model, engine):
    if engine not in ("harness", "cocotb"):
        raise ValueError(f"engine must be 'harness' or 'cocotb', not {engine!r}")
    if model is None:
        if engine == "cocotb":
            return verilate.core_model(rows, cols)
        return verilate.harness_model(rows, cols)
    if engine == "harness" and getattr(model, "kind", "harness") == "cocotb":
        # the same design and parameters, in the C++ harness
        return verilate.build(model.design, kind="harness", **model.params)
    return model


def _has_logs(model) -> bool:
    """The core writes result logs (one per PE column) instead of one C buffer."""
    return any(p.startswith("ctrl__results__") for p in model.ports)


def _block_models(blocks, rows: int, cols: int, logs: bool) -> list:
    """``hw.contract.cycles``' estimate of each core operation ``(S block, M rows)`` (``None``:
    0), all result-log operations at once (``schedule_cycles_many``)."""
    if not logs:
        return [0 if b is None else schedule_cycles(b[0], b[1], rows, cols, result_logs=False)
                for b in blocks]
    out = [0] * len(blocks)
    todo = [i for i, b in enumerate(blocks) if b is not None]
    if todo:
        est = schedule_cycles_many([(blocks[i][0] != 0).sum(axis=0) for i in todo],
                                   [blocks[i][1] for i in todo], rows, cols)
        for i, e in zip(todo, est.tolist(), strict=True):
            out[i] = e
    return out


def model_cycles(jobs, model) -> list:
    """:attr:`GemmResult.model_cycles` of each GEMM ``(d, s)`` without simulating it: the cycle
    model summed over the core operations :func:`run_gemms` cuts it into (for GEMMs that run
    elsewhere, e.g. with the select unit in the loop, :mod:`sim.select_loop`)."""
    lim = _limits(model)
    logs = _has_logs(model)
    out = []
    for d, s in jobs:
        (m, k), n = np.shape(d), np.shape(s)[1]
        if not (m and k and n):
            out.append(0)
            continue
        nz = np.asarray(s) != 0
        blocks = [(s[kb, nb], mb.stop - mb.start)
                  for mb, kb, nb in plan(m, k, n, lambda kb, nz=nz: nz[kb].sum(axis=0), lim)]
        out.append(sum(_block_models(blocks, lim["rows"], lim["cols"], logs)))
    return out


def run_gemms(jobs, *, rows: int = 8, cols: int = 8, model=None, mode: str = "auto",
              check: bool = True, progress=None, cycles_only=False, sim=None,
              parallel=None, engine: str = "harness", labels=None) -> GemmBatch:
    """Run many GEMMs ``[(d, s), ...]``; one :class:`GemmResult` each, returned as a
    :class:`GemmBatch` (a list with the batch's timing as ``.stats``).

    ``check`` raises :class:`SimulationError` when the core reports an error code.
    ``progress(jobs_done, jobs)`` is called while the simulator runs (e.g. to move a tqdm bar).
    ``cycles_only`` (a bool, or one per job): count cycles but do not compute ``C``: of the M
    blocks of equal height over the same S block only the first runs (the core's timing does
    not depend on D's values) and its counters are multiplied; ``c`` stays zero. Used for the
    dense baselines of large models.

    Where it runs: ``engine="harness"`` (default) the C++ harness (:mod:`sim.harness`): in
    ``sim``, a :class:`~sim.harness.CoreSim` the caller keeps across calls, or in a process
    started for this call; with ``parallel`` (a ``dask.distributed.Client``, a scheduler
    address ``"tcp://host:port"`` or a number of local processes, see :mod:`sim.cluster`) the
    core operations are spread over the cluster's workers, one simulator process each, with
    results identical to a serial run. ``engine="cocotb"``: the cocotb bench (slower; for
    comparison). ``labels`` (one per job) name the GEMM in error messages.
    """
    t0 = time.monotonic()
    jobs = list(jobs)
    for j, (d, s) in enumerate(jobs):
        d, s = np.asarray(d), np.asarray(s)
        if d.dtype != np.int8 or s.dtype != np.int8:
            raise TypeError(f"job {j}: D and S must be int8 arrays, got {d.dtype}, {s.dtype}")
        if d.ndim != 2 or s.ndim != 2 or d.shape[1] != s.shape[0]:
            raise ValueError(f"job {j}: shapes {d.shape} @ {s.shape} do not chain")
    if sim is not None:
        model = sim.model
    model = _model(rows, cols, model, engine)
    lim = _limits(model)
    rows, cols = lim["rows"], lim["cols"]
    runs, d_blobs, s_blobs, owners, mults, models = [], {}, {}, [], [], []
    metas = []
    logs = _has_logs(model)
    only = ([bool(cycles_only)] * len(jobs) if isinstance(cycles_only, bool | int)
            else [bool(x) for x in cycles_only])
    for j, (d, s) in enumerate(jobs):
        d = np.asarray(d)
        s = np.asarray(s)
        m, k = d.shape
        n = s.shape[1]
        nz = s != 0
        nnz = int(nz.sum())
        metas.append((m, k, n, nnz))
        if m == 0 or n == 0:
            continue
        if k == 0:  # nothing to compute; C is zero and no core operation is needed
            continue
        blocks = plan(m, k, n, lambda kb, nz=nz: nz[kb].sum(axis=0), lim)
        d_cache, s_cache, seen = {}, {}, {}
        for mb, kb, nb in blocks:
            if only[j]:
                # the core's timing depends on S and the number of M tiles, not on D's values:
                # M blocks of equal height over the same S block take the same cycles
                ckey = (kb.start, nb.start, mb.stop - mb.start)
                if ckey in seen:
                    mults[seen[ckey]] += 1
                    continue
                seen[ckey] = len(runs)
            # M blocks of different column groups can differ in height: key on both ends
            dkey = (mb.start, mb.stop, kb.start, kb.stop)
            skey = (kb.start, kb.stop, nb.start, nb.stop)
            if dkey not in d_cache:
                d_cache[dkey] = len(d_blobs)
                d_blobs[len(d_blobs)] = pack_d(d[mb, kb], rows)
            if skey not in s_cache:
                s_cache[skey] = len(s_blobs)
                s_blobs[len(s_blobs)] = _encode(s[kb, nb])
            sid = s_cache[skey]
            runs.append([mb.stop - mb.start, kb.stop - kb.start, nb.stop - nb.start,
                         d_cache[dkey], sid, len(s_blobs[sid]), 0 if only[j] else 1])
            owners.append((j, mb, nb))
            mults.append(1)
            models.append(None if only[j] else (s[kb, nb], mb.stop - mb.start))
    models = _block_models(models, rows, cols, logs)
    # group runs by D block to avoid rewriting D for every column group
    order = sorted(range(len(runs)), key=lambda r: (owners[r][0], runs[r][3], runs[r][4]))
    runs = [runs[r] for r in order]
    owners = [owners[r] for r in order]
    mults = [mults[r] for r in order]
    models = [models[r] for r in order]
    results = [
        GemmResult(c=np.zeros((m, n), dtype=np.int64), cycles=0, macs=m * nnz, runs=0,
                   rows=rows, cols=cols, shape=(m, k, n), nnz=nnz)
        for (m, k, n, nnz) in metas
    ]
    info = {"bench": 0.0, "io": 0.0, "cpu": 0.0, "cpu_io": 0.0, "preload": [], "ticks": 0,
            "processes": [], "lost_workers": []}
    if runs:
        cb = None
        if progress is not None:
            ends = np.cumsum(np.bincount([o[0] for o in owners], minlength=len(metas)))

            def cb(runs_done):
                progress(int(np.searchsorted(ends, runs_done, side="right")), len(metas))

        def describe(r):
            j, mb, nb = owners[r]
            lab = f" ({labels[j]})" if labels is not None else ""
            return (f"core operation {r + 1} of {len(runs)}: GEMM {j}{lab} shape "
                    f"{results[j].shape}, block M[{mb.start}:{mb.stop}] N[{nb.start}:{nb.stop}]")

        stats, cs, info = simulate(model, np.array(runs), d_blobs, s_blobs, mode=mode,
                                   progress=cb, sim=sim, parallel=parallel, describe=describe)
        for r, (j, mb, nb) in enumerate(owners):
            res = results[j]
            cyc, busy, stall, idle, err, code = (int(x) for x in stats[r])
            if err:
                res.error_code = code
                if check:
                    lab = f" ({labels[j]})" if labels is not None else ""
                    raise SimulationError(
                        f"job {j}{lab}: the core reported error code {code} on block "
                        f"M[{mb.start}:{mb.stop}] N[{nb.start}:{nb.stop}] (shape {res.shape})"
                    )
                continue
            mult = mults[r]
            res.model_cycles += models[r] * mult
            res.cycles += cyc * mult
            res.busy_cycles += busy * mult
            res.stall_cycles += stall * mult
            res.idle_cycles += idle * mult
            res.runs += mult
            if r in cs:
                words = cs[r]
                res.c[mb, nb] += unpack_c(words, mb.stop - mb.start, nb.stop - nb.start, rows)
    for j, res in enumerate(results):
        res.cycles_only = only[j]
        res.c = res.c.astype(np.int32)
    cycles = info.get("ticks") or (sum(int(stats[r][0]) for r in range(len(runs))) if runs
                                   else 0)
    return GemmBatch(results, BatchStats(
        jobs=len(results), runs=len(runs), cycles=int(cycles),
        wall=time.monotonic() - t0, bench=info["bench"], io=info["io"], cpu=info["cpu"],
        cpu_io=info["cpu_io"], preload=info["preload"], engine=model.kind.split("-")[0],
        processes=info.get("processes", []), lost_workers=info.get("lost_workers", []),
    ))


def run_gemm(d, s, *, rows: int = 8, cols: int = 8, model=None, mode: str = "auto",
             sim=None, engine: str = "harness") -> GemmResult:
    """``C = D @ S`` on the RTL core (``docs/contract.md``): ``D [M, K]`` and ``S [K, N]`` int8."""
    return run_gemms([(d, s)], rows=rows, cols=cols, model=model, mode=mode, sim=sim,
                     engine=engine)[0]


def dump_waves(d, s, path, *, rows: int = 8, cols: int = 8, model=None) -> GemmResult:
    """Run one GEMM in the FST-tracing build of the harness and dump its waveform to ``path``.

    Every core operation of the GEMM (and the buffer preloads between them) is in the file;
    the result is the same :class:`GemmResult` as :func:`run_gemm`'s.
    """
    from .harness import CoreSim

    if model is None:
        model = verilate.harness_model(rows, cols, trace=True)
    elif model.kind != "harness-trace":
        model = verilate.build(model.design, kind="harness-trace", **model.params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with CoreSim(model) as core:
        core.trace(path)
        res = run_gemms([(d, s)], sim=core)[0]
        core.trace(None)
    return res


def run_raw(model, items, *, mode: str = "auto", extra_env=None):
    """Low-level: run hand-made buffer contents (e.g. malformed S streams).

    ``items``: dicts with ``d`` (D buffer words ``[w, rows]`` int8, or a D matrix via
    ``pack_d``), ``s`` (uint32 words), ``m``, ``k``, ``n``, optional ``s_len`` and ``read_c``.
    Returns a list of ``(stats dict, C words or None)``.
    """
    runs, d_blobs, s_blobs = [], {}, {}
    for i, it in enumerate(items):
        d_blobs[i] = np.asarray(it["d"], dtype=np.int8)
        s_blobs[i] = np.asarray(it["s"], dtype=np.uint32)
        runs.append([it["m"], it["k"], it["n"], i, i,
                     it.get("s_len", len(s_blobs[i])), int(it.get("read_c", 1))])
    if model.kind == "cocotb":
        stats, cs, _ = simulate_cocotb(model, np.array(runs), d_blobs, s_blobs, mode=mode,
                                       extra_env=extra_env)
    else:
        stats, cs, _ = simulate(model, np.array(runs), d_blobs, s_blobs, mode=mode)
    keys = ("cycles", "busy", "stall", "idle", "error", "code")
    return [({k: int(v) for k, v in zip(keys, stats[r], strict=True)}, cs.get(r))
            for r in range(len(runs))]


def _rounded(x: float):
    return None if x != x else round(x)  # NaN (nothing measurable) -> null in JSON


def main(argv=None) -> int:
    """``python -m sim.gemm [--array RxC] [M K N density]``: one random GEMM, with timing."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sim.gemm")
    ap.add_argument("shape", nargs="*", type=float, default=[64, 576, 64, 0.1])
    ap.add_argument("--array", type=compare_args.array, default=(8, 8))
    ap.add_argument("--mode", default="auto", choices=["auto", "preload", "ports"])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    m, k, n = (int(x) for x in args.shape[:3])
    density = args.shape[3] if len(args.shape) > 3 else 0.1
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(args.repeat):
        d = rng.integers(-127, 128, (m, k), dtype=np.int8)
        s = rng.integers(-127, 128, (k, n), dtype=np.int8)
        s[rng.random((k, n)) >= density] = 0
        jobs.append((d, s))
    res = run_gemms(jobs, rows=args.array[0], cols=args.array[1], mode=args.mode)
    ok = all((r.c == d.astype(np.int64) @ s.astype(np.int64)).all()
             for r, (d, s) in zip(res, jobs, strict=True))
    b = res.stats
    r = res[0]
    print(json.dumps({
        "shape": [m, k, n], "density": r.density, "cycles": r.cycles, "macs": r.macs,
        "utilization": round(r.utilization, 4), "runs": r.runs, "bit_exact": bool(ok),
        "batch_cycles": b.cycles, "wall_s": round(b.wall, 3), "bench_s": round(b.bench, 3),
        "io_s": round(b.io, 3), "sim_cycles_per_s": _rounded(b.cycles_per_second),
        "sim_cycles_per_cpu_s": _rounded(b.cycles_per_cpu_second),
        "preload": b.preload,
    }, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("COCOTB_REWRITE_ASSERTION_FILES", REWRITE_ENV[
        "COCOTB_REWRITE_ASSERTION_FILES"])
    sys.exit(main())
