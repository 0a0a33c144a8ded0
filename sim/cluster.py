"""Core operations spread over many simulator processes with Dask distributed.

:func:`sim.gemm.run_gemms` plans every GEMM into core operations on the client (the plan, and so
every cycle count, is the serial one), cuts the operation list into chunks of about equal
estimated cycles, and submits one Dask task per chunk with the D/S buffer words it needs. A
worker runs its chunks in a :class:`~sim.harness.CoreSim` it keeps for its lifetime (one
simulator process per worker, ``threads_per_worker=1``). Each operation's counters and C words
do not depend on what ran before it, so the results are identical to a serial run.

Where the workers are (``parallel=``):

* an ``int`` N: a :class:`distributed.LocalCluster` of N worker processes on this machine
  (:func:`local_client`; the compare job starts one with ``os.cpu_count()`` workers);
* ``"tcp://HOST:PORT"``: a running scheduler (``dask scheduler``; workers started with
  ``dask worker tcp://HOST:PORT --nthreads 1``, by dask-jobqueue/SLURM, Kubernetes, ...). A
  worker builds the core model from *its own* checkout if it has none; a worker whose Verilog
  differs from the client's refuses the work (one line naming both hashes);
* a :class:`distributed.Client`.

Failures: a task whose simulator process dies raises on the worker and is retried
(``retries``); a worker that dies is noticed by the scheduler, which reruns its tasks elsewhere
(Dask's ``distributed.scheduler.allowed-failures``). Every worker that leaves the cluster while
a batch runs is printed and listed in ``BatchStats.lost_workers``; a chunk that still cannot be
computed raises :class:`~sim.bench.SimulationError` naming its operations. Nothing is dropped:
the client checks that every operation came back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from .bench import SimulationError

__all__ = ["local_client", "resolve_client", "run_distributed", "RETRIES"]

RETRIES = 2  # reruns of a chunk whose task raised (e.g. its simulator process died)
CHUNKS_PER_WORKER = 4  # load balance: more chunks than workers

_WORKER_SIMS: dict = {}  # on a worker: verilog hash -> CoreSim (one simulator process)


def _verilog_sha(model) -> str:
    return hashlib.sha256((model.build_dir / f"{model.toplevel}.v").read_bytes()).hexdigest()


def local_client(n_workers: int | None = None):
    """A client of a new :class:`distributed.LocalCluster` with one single-threaded worker
    process per core (``n_workers`` defaults to ``os.cpu_count()``); close it when done.

    It has no dashboard (a batch job: nothing shows its address; for one, run ``dask
    scheduler``, whose dashboard is on port 8787, and pass its address). The scheduler's HTTP
    server (health and metrics routes) starts all the same, and without an address
    distributed puts it on the fixed port 8787, so that runs side by side warned "Port 8787
    is already in use": it listens on a free port of 127.0.0.1."""
    import logging

    from distributed import Client, LocalCluster

    n = n_workers or os.cpu_count() or 1
    repo = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0",
                           scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR,
                           env={"PYTHONPATH": path})
    return Client(cluster)


def resolve_client(parallel, timeout: float = 20.0):
    """``(client, owned)`` for ``parallel`` (see the module docstring); ``owned`` clients are
    the caller's to close."""
    if isinstance(parallel, bool) or parallel is None:
        raise ValueError(f"parallel must be a worker count, a scheduler address or a Client, "
                         f"not {parallel!r}")
    if isinstance(parallel, int):
        if parallel < 1:
            raise ValueError(f"parallel: need at least 1 worker, not {parallel}")
        return local_client(parallel), True
    if isinstance(parallel, BackgroundCluster):
        return parallel.get(), False
    if isinstance(parallel, str):
        from distributed import Client

        try:
            return Client(parallel, timeout=f"{timeout}s"), True
        except (OSError, TimeoutError) as exc:
            raise SimulationError(f"cannot reach the Dask scheduler at {parallel}: {exc}") \
                from None
    return parallel, False


class BackgroundCluster:
    """A :func:`local_client` started in a thread, so that its few seconds of start-up overlap
    the job's training and lowering; :meth:`get` waits for it. ``parallel=`` accepts it."""

    def __init__(self, n_workers: int):
        import concurrent.futures

        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dask-start")
        self._future = self._pool.submit(local_client, n_workers)

    def get(self):
        return self._future.result()

    def close(self) -> None:
        try:
            client = self._future.result()
        except Exception:  # noqa: BLE001 - a cluster that failed to start has nothing to close
            client = None
        if client is not None:
            close_client(client)
        self._pool.shutdown(wait=False)


@contextlib.contextmanager
def for_args(workers: int = 0, scheduler: str | None = None):
    """The ``parallel=`` value of a job's ``--workers N`` / ``--scheduler tcp://HOST:PORT``
    options, or ``None`` for one simulator process in this process (``workers == 1``, or one
    core); ``workers=0`` means one per core. A local cluster starts in the background at once;
    everything is closed at the end."""
    if scheduler:
        client, owned = resolve_client(scheduler)
        try:
            yield client
        finally:
            if owned:
                close_client(client)
        return
    n = workers or os.cpu_count() or 1
    if n == 1:
        yield None
        return
    cluster = BackgroundCluster(n)
    try:
        yield cluster
    finally:
        cluster.close()


def close_client(client) -> None:
    cluster = getattr(client, "cluster", None)
    with contextlib.suppress(Exception):
        client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()


# --------------------------------------------------------------------------------------------
# worker side


def _worker_sim(spec: dict):
    from . import verilate
    from .harness import CoreSim

    sim = _WORKER_SIMS.get(spec["sha"])
    if sim is not None and sim.alive:
        return sim
    model = None
    bdir = Path(spec["build_dir"])
    with contextlib.suppress(OSError, ValueError, KeyError):  # the client's model, if shared
        import json

        model = verilate.Model.from_json(bdir, json.loads((bdir / "model.json").read_text()))
        if not model.executable.is_file() or _verilog_sha(model) != spec["sha"]:
            model = None
    if model is None:  # another machine: build from this worker's own sources
        model = verilate.build(spec["design"], kind="harness", pgo=spec.get("pgo", True),
                               **spec["params"])
    sha = _verilog_sha(model)
    if sha != spec["sha"]:
        raise SimulationError(
            f"this worker's core (Verilog sha256 {sha[:12]}, {model.build_dir}) is not the "
            f"client's ({spec['sha'][:12]}): its hw/ sources differ")
    try:
        from distributed import get_worker

        label = get_worker().address
    except (ImportError, ValueError):
        label = f"pid {os.getpid()}"
    sim = CoreSim(model, label=label)
    _WORKER_SIMS[spec["sha"]] = sim
    return sim


def run_chunk(spec: dict, runs, d_blobs: dict, s_blobs: dict, ports: bool, first: int,
              kill_once: str | None = None):
    """Dask task: run one chunk of core operations in this worker's simulator process.

    ``kill_once`` (tests): a file path; the first worker that finds it missing creates it and
    exits at once, as a crashed machine would.
    """
    if kill_once:
        try:  # O_EXCL: exactly one worker claims the file, even when two tasks race here
            fd = os.open(kill_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
    from .harness import SimulatorDied

    sim = _worker_sim(spec)

    def describe(r):
        return f"core operation {first + r + 1} (chunk starting at {first + 1})"

    try:
        stats, cs, info = sim.run_ops(runs, d_blobs, s_blobs, ports=ports, describe=describe)
    except SimulatorDied:
        _WORKER_SIMS.pop(spec["sha"], None)  # the retry starts a new process
        raise
    info.update(pid=sim.pid, worker=sim.label, host=os.uname().nodename)
    return first, stats, cs, info


# --------------------------------------------------------------------------------------------
# client side


def _estimate(runs: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Rough cycles per operation (for balancing only): M tiles × blob words / columns."""
    m, n, s_len = runs[:, 0], runs[:, 2], runs[:, 5]
    return -(-m // rows) * np.maximum(s_len - 4 - n, 0) / cols + 8 * n + 30


def _chunks(runs: np.ndarray, parts: int, rows: int, cols: int) -> list[tuple[int, int]]:
    est = np.cumsum(_estimate(runs, rows, cols))
    total = float(est[-1]) if len(est) else 0.0
    bounds = [0]
    for i in range(1, parts):
        cut = int(np.searchsorted(est, total * i / parts))
        if cut > bounds[-1]:
            bounds.append(cut)
    bounds.append(len(runs))
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _sub_batch(runs: np.ndarray, a: int, b: int, d_blobs: dict, s_blobs: dict):
    sub = runs[a:b].copy()
    d_map, s_map = {}, {}
    for r in sub:
        r[3] = d_map.setdefault(int(r[3]), len(d_map))
        r[4] = s_map.setdefault(int(r[4]), len(s_map))
    return (sub, {new: d_blobs[old] for old, new in d_map.items()},
            {new: s_blobs[old] for old, new in s_map.items()})


def _workers(client) -> dict:
    with contextlib.suppress(Exception):
        return dict(client.scheduler_info(n_workers=-1).get("workers", {}))
    return {}


def run_distributed(model, runs, d_blobs: dict, s_blobs: dict, parallel, *,
                    ports: bool = False, progress=None, kill_once: str | None = None):
    """:func:`sim.gemm.simulate` over a Dask cluster; same return value, plus per-process
    figures and the workers lost on the way in ``info``."""
    from distributed import as_completed

    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 7)
    client, owned = resolve_client(parallel)
    try:
        t0 = time.perf_counter()
        known = _workers(client)
        n_workers = max(1, len(known))
        rows, cols = model.attrs["rows"], model.attrs.get("cols", 1)
        spec = {"design": model.design, "params": model.params, "sha": _verilog_sha(model),
                "build_dir": str(model.build_dir), "pgo": model.pgo}
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for i, (a, b) in enumerate(_chunks(runs, n_workers * CHUNKS_PER_WORKER, rows, cols)):
            sub, ds, ss = _sub_batch(runs, a, b, d_blobs, s_blobs)
            # the buffer words travel inside the task (not scattered): the scheduler keeps
            # them, so a chunk whose worker died can be rerun elsewhere; Dask's warning about
            # large graphs is about data used many times, which this is not
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sending large graph",
                                        category=UserWarning)
                fut = client.submit(run_chunk, spec, sub, ds, ss, ports, a, kill_once,
                                    key=f"swat-core-ops-{tag}-{i}", retries=RETRIES, pure=False)
            futures[fut] = (a, b)
        stats = np.zeros((len(runs), 6), dtype=np.int64)
        cs: dict = {}
        got = np.zeros(len(runs), dtype=bool)
        procs: dict = {}
        lost: list = []
        done_runs = 0
        last_check = time.perf_counter()
        pending = as_completed(list(futures), with_results=False)

        def check_workers():
            now = _workers(client)
            for addr in sorted(set(known) - set(now)):
                lost.append(addr)
                known.pop(addr)
                print(f"sim.cluster: worker {addr} left the cluster while simulating; Dask "
                      f"reruns its core operations elsewhere", file=sys.stderr, flush=True)
            known.update(now)

        for fut in pending:
            a, b = futures[fut]
            if time.perf_counter() - last_check > 0.5:
                last_check = time.perf_counter()
                check_workers()
            try:
                first, st, c, info = fut.result()
            except Exception as exc:  # noqa: BLE001 - named and re-raised
                raise SimulationError(
                    f"core operations {a + 1}..{b} of {len(runs)} could not be simulated on "
                    f"the cluster after {RETRIES} retries: {type(exc).__name__}: {exc}"
                ) from exc
            stats[first:first + len(st)] = st
            for r, words in c.items():
                cs[first + r] = words
            got[first:first + len(st)] = True
            key = (info["host"], info["pid"])
            p = procs.setdefault(key, {"cycles": 0, "wall": 0.0, "cpu": 0.0, "runs": 0,
                                       "pid": info["pid"], "worker": info["worker"],
                                       "host": info["host"]})
            p["cycles"] += info["ticks"]
            p["wall"] += info["wall"]
            p["cpu"] += info["cpu"]
            p["runs"] += len(st)
            done_runs += len(st)
            if progress is not None:
                progress(done_runs)
        check_workers()
        if not got.all():  # pragma: no cover - as_completed yields every future
            missing = np.flatnonzero(~got)
            raise SimulationError(f"{len(missing)} core operations came back from no worker "
                                  f"(first: {missing[0] + 1})")
        wall = time.perf_counter() - t0
        plist = list(procs.values())
        info = {"bench": wall, "io": 0.0, "cpu": sum(p["cpu"] for p in plist), "cpu_io": 0.0,
                "preload": [not ports] * 3, "ticks": sum(p["cycles"] for p in plist),
                "processes": plist, "lost_workers": lost}
        return stats, cs, info
    finally:
        if owned:
            close_client(client)
