"""The ``assert_refused`` fixture (tests/conftest.py) and ``recorded.recorded_warnings`` under it:
they fail when the refused object (the block) leaves a warning behind, and do not fail on
garbage another test left."""

import gc
import os
import types
import warnings
import weakref

import pytest
from amaranth.hdl import Elaboratable
from recorded import recorded_warnings

from hw.params import rejected_unused


class _Refused(Elaboratable):
    """Refuses every argument, the way the project's elaboratables do."""

    @rejected_unused
    def __init__(self, n):
        raise ValueError(f"n must be positive, not {n}")


class _Leaky(Elaboratable):
    """Refuses without ``rejected_unused``: warns "created but never used" when collected."""

    def __init__(self, n):
        self.cycle = self  # collected only by gc.collect(), as a real half-made design often is
        raise ValueError(f"n must be positive, not {n}")


class _LeaksAFile(Elaboratable):
    """Refuses cleanly but leaves a file open."""

    @rejected_unused
    def __init__(self, n):
        self.log = open(os.devnull)
        raise ValueError(f"n must be positive, not {n}")


class _Garbage:
    """Stands in for what an earlier test left: a reference cycle warning when collected (like
    a ``subprocess.Popen`` whose process still ran, or an unclosed pipe)."""

    def __init__(self):
        self.cycle = self
        self.file = open(os.devnull)

    def __del__(self):
        warnings.warn("subprocess 942 is still running", ResourceWarning, stacklevel=1,
                      source=self)


def test_a_clean_refusal_passes(assert_refused):
    assert_refused(lambda: _Refused(0), ValueError, "n must be positive, not 0")


def test_the_wrong_message_fails(assert_refused):
    with pytest.raises(AssertionError):
        assert_refused(lambda: _Refused(0), ValueError, "n must be positive")


def test_an_unused_refused_object_fails(assert_refused):
    with pytest.raises(AssertionError) as e:
        assert_refused(lambda: _Leaky(0), ValueError, "n must be positive, not 0")
    assert "_Leaky object at" in str(e.value) and "created but never used" in str(e.value)


def test_a_file_the_refused_object_left_open_fails(assert_refused):
    with pytest.raises(AssertionError) as e:
        assert_refused(lambda: _LeaksAFile(0), ValueError, "n must be positive, not 0")
    assert "unclosed file" in str(e.value)


def test_another_tests_garbage_does_not_count(assert_refused):
    enabled = gc.isenabled()
    gc.disable()  # the garbage is still there when assert_refused starts
    try:
        garbage = _Garbage()
        alive = weakref.ref(garbage)
        del garbage
        assert alive() is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the garbage's: not this test's
            assert_refused(lambda: _Refused(0), ValueError, "n must be positive, not 0")
        assert alive() is None  # it went, and its warnings did not fail the check
    finally:
        if enabled:
            gc.enable()


def test_recorded_warnings_records_the_block_and_not_what_was_left_before():
    enabled = gc.isenabled()
    gc.disable()
    try:
        garbage = _Garbage()
        alive = weakref.ref(garbage)
        del garbage
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the garbage's: not this test's
            with recorded_warnings() as caught:
                assert alive() is None  # collected as the recording started, not inside it
                types.SimpleNamespace(log=open(os.devnull))  # a file the block leaves open
                gc.collect()
        assert [(w.category, str(w.message).split()[:2]) for w in caught] == [
            (ResourceWarning, ["unclosed", "file"])]
    finally:
        if enabled:
            gc.enable()
