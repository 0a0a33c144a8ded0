"""Shared pytest configuration."""

from __future__ import annotations

import os

# The suite's harness models are built without GCC profile-guided optimisation (a second
# compile and a training run per model, ~8 % faster simulation: it does not pay off for the
# suite's few seconds of simulation per model); SWAT_SIM_PGO=1 builds the suite's with it.
os.environ.setdefault("SWAT_SIM_PGO", "0")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 5:  # pytest.ExitCode.NO_TESTS_COLLECTED
        print("\nNO TESTS RAN: pytest collected no tests")
