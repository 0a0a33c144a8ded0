"""Training runs with an integer backend: per-step records, start-up and mid-run faults, resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.verilate import HARNESS_EXE
from sw import hil_run
from sw.backend import BackendError, IntrefBackend
from sw.train import main, train

pytestmark = pytest.mark.slow  # trains a few digits steps

KW = dict(dataset="digits", sparsity=0.9, batch_size=32, plots=False)


def test_intref_run_writes_per_step_records(tmp_path):
    res = train(backend="intref", max_steps=3, out=str(tmp_path), **KW)
    rec = res.history[-1]
    assert rec["backend"] == "intref" and rec["grad_quant"] == "tensor"
    assert [s["step"] for s in rec["steps"]] == [1, 2, 3]
    # 4 layers: 4 forward + 3 input-gradient (not the first layer) + 4 weight-gradient GEMMs
    assert all(s["gemms"] == 11 for s in rec["steps"])
    assert all(s["select_cycles"] > 0 and s["macs"] > 0 for s in rec["steps"])
    with open(tmp_path / "steps.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["cycles"] == ""  # intref has no clock
    with open(tmp_path / "metrics.csv") as fh:
        head = next(csv.reader(fh))
    assert {"backend", "macs", "select_cycles"} <= set(head)
    assert json.loads((tmp_path / "metrics.json").read_text())[-1]["steps"][0]["step"] == 1


def test_float_backend_unchanged():
    a = train(max_steps=2, seed=3, **KW)
    b = train(max_steps=2, seed=3, backend="torch", **KW)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
    assert "steps" not in a.history[-1]


def test_backend_that_cannot_start_fails_before_training(tmp_path, capsys):
    rc = main(["--backend", "fpga", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err == ["swat-train: error: backend fpga: no serial port given (--port /dev/ttyUSB0)"]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_backend_option_errors(capsys):
    assert main(["--backend", "gpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        "swat-train: error: --backend: unknown value 'gpu'; choose from torch, intref, rtl, fpga")
    assert main(["--backend", "intref", "--period", "4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "swat-train: error: --backend intref runs unstructured per-tensor Top-K every iteration "
        "(--period 1, --topk-dims nchw, no --structured)")


class _Dies(IntrefBackend):
    """An intref backend whose 'simulator' dies at its n-th batch."""

    def __init__(self, n):
        self.n = n

    def _run(self, jobs):
        self.n -= 1
        if self.n == 0:
            raise BackendError(f"backend rtl: the simulator failed on "
                               f"{', '.join(j.label for j in jobs)}: process exited")
        return super()._run(jobs)


def test_death_mid_run_names_layer_and_pass_and_resume_continues(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    kw = dict(KW, batch_size=128, grad_quant="stochastic")  # its rounding resumes too
    ref = train(backend="intref", epochs=2, seed=1, **kw)
    spe = ref.history[0]["step"]  # steps per epoch
    # dies in epoch 2, in the backward of its 2nd step: 8 GEMM batches a step (4 forward, 4
    # backward: both gradients of a layer in one batch) plus the 4 eval forwards of epoch 1
    monkeypatch.setattr(hil_run, "make_backend", lambda name, **kw: _Dies(8 * spe + 4 + 8 + 6))
    rc = main(["--backend", "intref", "--epochs", "2", "--seed", "1", "--batch-size", "128",
               "--grad-quant", "stochastic",
               "--out", out, "--no-progress", "--no-plots", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1
    assert err[0].startswith("swat-train: error: backend rtl: the simulator failed on ")
    assert err[0].endswith(f"on features.7:backward_input, features.7:backward_weight: process "
                           f"exited; the last "
                           f"checkpoint resumes: --resume {out}/checkpoint.pt")
    monkeypatch.undo()
    res = train(backend="intref", epochs=2, seed=1, out=out, resume="auto", **kw)
    assert res.steps == ref.steps
    for (k, x), y in zip(res.model.state_dict().items(), ref.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k


# --------------------------------------------------------------------------- the RTL backend


def _recording(calls):
    from sw.backend import make_backend

    def make(name, **kw):
        be = make_backend(name, **kw)
        run = be._run

        def rec(jobs):
            outs = run(jobs)
            calls.append([(j.label, o.c.copy()) for j, o in zip(jobs, outs, strict=True)])
            return outs

        be._run = rec
        return be

    return make


def train_recorded(monkeypatch, backend, **kw):
    """Train with ``backend``: every batch's ``[(label, C)]``, the final weights, the steps."""
    calls = []
    monkeypatch.setattr(hil_run, "make_backend", _recording(calls))
    res = train(backend=backend, **kw)
    return calls, res.model.state_dict(), res.history[-1]["steps"]


def assert_identical_integers(ref, run):
    """Two :func:`train_recorded` runs computed the same GEMMs, C and weights bit for bit."""
    assert len(ref[0]) == len(run[0]) == 2 * 8 + 4  # 2 steps + the eval forwards
    for a, b in zip(ref[0], run[0], strict=True):
        for (la, ca), (lb, cb) in zip(a, b, strict=True):
            assert la == lb
            np.testing.assert_array_equal(ca, cb, err_msg=la)
    for (k, x), y in zip(ref[1].items(), run[1].values(), strict=True):
        assert torch.equal(x, y), k


def test_rtl_and_intref_compute_identical_integers(monkeypatch):
    kw = dict(max_steps=2, seed=5, **dict(KW, batch_size=16))
    ref = train_recorded(monkeypatch, "intref", **kw)
    rtl = train_recorded(monkeypatch, "rtl", **kw)
    assert_identical_integers(ref, rtl)
    steps = rtl[2]
    assert all(s["cycles"] == sum(s[f"cycles_{p}"] for p in
                                  ("forward", "backward_input", "backward_weight"))
               for s in steps)
    assert all(0 < s["utilization"] <= 1 and s["cycles"] >= s["mac_bound_cycles"] for s in steps)
    # rtl: S made by the core's threshold-select unit (blobs checked against intref's Top-K)
    assert all(s["select_source"] == "rtl" and s["select_cycles"] > 0
               and 0 <= s["select_exposed_cycles"] <= s["select_cycles"] for s in steps)
    assert all(s["select_source"] == "formula" for s in ref[2])


def test_simulator_killed_mid_run_names_layer_and_pass(monkeypatch):
    made = []

    def make(name, **kw):
        from sw.backend import make_backend

        made.append(make_backend(name, **kw))
        return made[-1]

    def kill_after_first_step(info):
        if info.step == 1:
            os.kill(made[0].pid, signal.SIGKILL)
            time.sleep(0.2)

    monkeypatch.setattr(hil_run, "make_backend", make)
    with pytest.raises(BackendError) as e:
        train(backend="rtl", max_steps=3, callback=kill_after_first_step,
              **dict(KW, batch_size=8))
    msg = str(e.value)
    assert msg.startswith("backend rtl: the simulator failed on features.0:forward: ")
    assert "\n" not in msg
    assert made[0].core is None  # closed by train()


def test_ctrl_c_stops_the_simulator_process(tmp_path):
    """SIGINT to the trainer alone (not its process group): it closes the simulator, no orphan."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sw.train", "--backend", "rtl", "--max-steps", "400",
         "--batch-size", "8", "--out", str(tmp_path / "r"), "--no-progress", "--no-plots"],
        env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # a runner started in the background (nohup ... &) ignores SIGINT, and so would the
        # trainer it starts: give it the default disposition a terminal's Ctrl-C meets
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        child = None
        for _ in range(6000):  # wait until the simulator runs (after a build on a cold cache)
            kids = [k for k in _children(proc.pid) if _exe(k) == HARNESS_EXE]
            if kids:
                child = kids[0]
                break
            time.sleep(0.1)
        assert child is not None, "the simulator process never started"
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # a hang guard, counted from the signal
    finally:
        if proc.poll() is None:  # a hang: take the group down and reap it (no stray process
            os.killpg(proc.pid, signal.SIGKILL)  # or pipe for a later test's warnings)
            proc.communicate()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "swat-train: interrupted"
    assert not os.path.exists(f"/proc/{child}") or _zombie(child)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True
