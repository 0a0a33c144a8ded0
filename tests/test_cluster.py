"""sim.cluster: GEMMs spread over a real Dask scheduler and two workers on localhost."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from operands import rand_int8

from sim import cluster, gemm, verilate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask")]

#: Seconds the scheduler and the workers get to start, from their ``Popen`` (imports of
#: distributed on 2 cores busy with the rest of the suite): only bounds how long a cluster that
#: never comes up makes the tests wait.
START_S = 300.0


def _jobs():
    rng = np.random.default_rng(21)
    return [(rand_int8(rng, (200, 600)), rand_int8(rng, (600, 70), 0.1)),
            (rand_int8(rng, (64, 576)), rand_int8(rng, (576, 64), 0.2)),
            (rand_int8(rng, (100, 64)), rand_int8(rng, (64, 576), 0.1)),
            (rand_int8(rng, (16, 300)), rand_int8(rng, (300, 40)))]


def _dask(*args):
    exe = Path(sys.executable).with_name("dask")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "distributed.cli.dask_spec"]
    return cmd + list(args)


@pytest.fixture(scope="module")
def port_8787_taken():
    """distributed's default dashboard port held, as by another run's cluster: a listening
    socket on 127.0.0.1:8787 that accepts nothing (or another process holds the port)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 8787))
        sock.listen()
    except OSError:  # in use already
        sock.close()
    try:
        yield
    finally:
        sock.close()


@pytest.fixture(scope="module")
def dask_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("dask")


@pytest.fixture(scope="module")
def scheduler(dask_logs, port_8787_taken):
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1,
    logs in ``dask_logs``."""
    verilate.harness_model(8, 8)  # built once here, reused by the workers from the cache
    sfile = dask_logs / "scheduler.json"
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    env["SWAT_SIM_BUILD"] = str(verilate.build_root())
    logs, procs = [], []
    try:
        for name in ("scheduler", "worker0", "worker1"):
            logs.append(open(dask_logs / f"{name}.log", "w"))
        # --no-dashboard still starts the HTTP server, by default on 8787: a free port instead
        procs.append(subprocess.Popen(
            _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                  "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sfile)),
            env=env, stdout=logs[0], stderr=subprocess.STDOUT))
        address = _scheduler_address(sfile, procs[0], dask_logs / "scheduler.log")
        for i in (1, 2):
            procs.append(subprocess.Popen(
                _dask("worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                      "--no-dashboard", "--name", f"w{i}"),
                env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        _wait_for_workers(address)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()


def _scheduler_address(sfile: Path, proc: subprocess.Popen, log: Path) -> str:
    """The address the scheduler wrote to ``sfile``, once it did (a file has no event to wait
    on: polled, for up to START_S from the scheduler's start, or until it exits)."""
    deadline = time.monotonic() + START_S
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(sfile.read_text())["address"]
        assert proc.poll() is None, f"the scheduler exited ({proc.returncode}):\n" \
                                    f"{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no scheduler file in {START_S:g} s:\n" \
                                            f"{log.read_text()[-3000:]}"
        time.sleep(0.1)


def _wait_for_workers(address: str) -> None:
    """Both workers connected (again, after a test killed one: its nanny starts another)."""
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=START_S)


@pytest.fixture
def two_workers(scheduler):
    """The scheduler's address, with two workers connected whatever ran before."""
    _wait_for_workers(scheduler)
    return scheduler


def _same(a, b):
    assert np.array_equal(a.c, b.c)
    assert (a.cycles, a.busy_cycles, a.stall_cycles, a.idle_cycles, a.runs) == \
        (b.cycles, b.busy_cycles, b.stall_cycles, b.idle_cycles, b.runs)


def test_two_workers_give_the_serial_results(two_workers):
    jobs = _jobs()
    serial = gemm.run_gemms(jobs)
    spread = gemm.run_gemms(jobs, parallel=two_workers, cycles_only=[False, True, False, False])
    stats = spread.stats
    assert len(stats.processes) == 2  # both workers simulated
    assert sum(p["runs"] for p in stats.processes) == stats.runs
    assert stats.lost_workers == []
    for j, (a, b) in enumerate(zip(serial, spread, strict=True)):
        if j == 1:  # cycles only: same counters, no C
            assert (a.cycles, a.busy_cycles, a.runs) == (b.cycles, b.busy_cycles, b.runs)
        else:
            _same(a, b)


def test_a_worker_that_dies_is_reported_and_its_work_rerun(two_workers, tmp_path, monkeypatch,
                                                           capsys):
    jobs = _jobs()
    serial = gemm.run_gemms(jobs)
    marker = tmp_path / "killed"
    monkeypatch.setattr(cluster, "run_distributed",
                        functools.partial(cluster.run_distributed, kill_once=str(marker)))
    spread = gemm.run_gemms(jobs, parallel=two_workers)
    assert marker.exists()  # one worker process exited in the middle of a task
    lost = spread.stats.lost_workers
    assert len(lost) == 1 and lost[0].startswith("tcp://127.0.0.1:")
    assert (f"sim.cluster: worker {lost[0]} left the cluster while simulating; Dask reruns "
            f"its core operations elsewhere") in capsys.readouterr().err
    for a, b in zip(serial, spread, strict=True):
        _same(a, b)


def test_the_scheduler_leaves_port_8787_alone(scheduler, dask_logs):
    """The test scheduler's HTTP server (no dashboard) is on a free port: with 8787 taken, as
    by a second test run beside this one, its log has no "Port 8787 is already in use"."""
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        port = client.scheduler_info()["services"]["dashboard"]
    assert port != 8787
    assert "already in use" not in (dask_logs / "scheduler.log").read_text()


def test_a_local_cluster_leaves_port_8787_alone(port_8787_taken):
    """``local_client`` (the compare job's ``--workers N``): no dashboard, and the scheduler's
    HTTP server on a free port of 127.0.0.1, so that concurrent runs do not warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = cluster.local_client(1)
        try:
            http = client.cluster.scheduler.http_server
            address = (http.address, http.port)
        finally:
            cluster.close_client(client)
    assert [str(w.message) for w in caught if "in use" in str(w.message)] == []
    assert address[0] == "127.0.0.1" and address[1] != 8787


def test_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(gemm.SimulationError, match=r"^cannot reach the Dask scheduler at "
                                                   r"tcp://127\.0\.0\.1:9: Timed out trying "
                                                   r"to connect to tcp://127\.0\.0\.1:9 "
                                                   r"after 2(\.0)? s$"):
        cluster.resolve_client("tcp://127.0.0.1:9", timeout=2)


def test_chunks_cover_every_operation_once():
    rng = np.random.default_rng(3)
    runs = np.zeros((37, 7), dtype=np.int64)
    runs[:, 0] = rng.integers(1, 200, 37)
    runs[:, 2] = rng.integers(1, 60, 37)
    runs[:, 5] = runs[:, 2] + 4 + rng.integers(0, 3000, 37)
    for parts in (1, 2, 8, 100):
        chunks = cluster._chunks(runs, parts, 8, 8)
        assert chunks[0][0] == 0 and chunks[-1][1] == 37
        assert all(a < b == c for (a, b), (c, _) in zip(chunks, chunks[1:], strict=False))
        assert len(chunks) <= min(parts, 37)
