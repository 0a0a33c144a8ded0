"""Shared pytest configuration."""

from __future__ import annotations

import gc
import os

import pytest
from recorded import recorded_warnings

# The suite's harness models are built without GCC profile-guided optimisation (a second
# compile and a training run per model, ~8 % faster simulation: it does not pay off for the
# suite's few seconds of simulation per model); SWAT_SIM_PGO=1 builds the suite's with it.
os.environ.setdefault("SWAT_SIM_PGO", "0")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 5:  # pytest.ExitCode.NO_TESTS_COLLECTED
        print("\nNO TESTS RAN: pytest collected no tests")


@pytest.fixture
def assert_refused(monkeypatch):
    """``assert_refused(make, exc, message)``: ``make()`` raises ``exc`` whose text is
    ``message``, and what it left half-made does not warn "created but never used" when
    collected (``hw.params.rejected_unused`` on the refusing ``__init__``; without it the
    check fails). The warnings are recorded with amaranth's own silence forced off: amaranth
    enables the warning only once anything was elaborated in the process, and the test may
    be a worker's first. Garbage already unreachable before ``make()`` (another test's) is
    collected before the recording starts and does not count."""
    from amaranth.hdl import UnusedElaboratable

    monkeypatch.setattr(UnusedElaboratable, "_MustUse__silence", False)

    def check(make, exc, message):
        # garbage other code left (an earlier test's leaked subprocess, an unclosed file: its
        # ResourceWarning) goes first, outside the recording: only what ``make()`` leaves counts
        with recorded_warnings() as caught:
            with pytest.raises(exc) as info:
                make()
            assert str(info.value) == message
            del info  # its traceback holds the refused object
            gc.collect()  # the refused object goes while the warnings are recorded
        left = [f"{w.category.__name__}: {w.message}" for w in caught]
        assert not left, f"the refused object left warnings: {left}"

    return check
