"""Training runs with an integer backend: per-step records, start-up and mid-run faults, resume."""

import csv
import json

import pytest
import torch

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
    rows = list(csv.DictReader(open(tmp_path / "steps.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["cycles"] == ""  # intref has no clock
    head = next(csv.reader(open(tmp_path / "metrics.csv")))
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
    ref = train(backend="intref", epochs=2, seed=1, **KW)
    spe = ref.history[0]["step"]  # steps per epoch
    # dies in epoch 2, in the backward of its 2nd step: 8 GEMM batches a step (4 forward, 4
    # backward: both gradients of a layer in one batch) plus the 4 eval forwards of epoch 1
    monkeypatch.setattr(hil_run, "make_backend", lambda name, **kw: _Dies(8 * spe + 4 + 8 + 6))
    rc = main(["--backend", "intref", "--epochs", "2", "--seed", "1", "--batch-size", "32",
               "--out", out, "--no-progress", "--no-plots", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1
    assert err[0].startswith("swat-train: error: backend rtl: the simulator failed on ")
    assert err[0].endswith(f"on features.7:backward_input, features.7:backward_weight: process "
                           f"exited; the last "
                           f"checkpoint resumes: --resume {out}/checkpoint.pt")
    monkeypatch.undo()
    res = train(backend="intref", epochs=2, seed=1, out=out, resume="auto", **KW)
    assert res.steps == ref.steps
    for (k, x), y in zip(res.model.state_dict().items(), ref.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
