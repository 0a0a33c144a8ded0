"""Recording the warnings a block of a test leaves, for tests that check "nothing warns"
(``assert_refused`` in ``conftest.py``, ``test_board``, ``test_bitstreams_build``)."""

import contextlib
import gc
import warnings

__all__ = ["collect_garbage", "recorded_warnings"]


def collect_garbage() -> None:
    """Collect what is unreachable already, until nothing is left (a finaliser can free more;
    at most 10 rounds)."""
    for _ in range(10):
        if not gc.collect():
            break


@contextlib.contextmanager
def recorded_warnings():
    """``warnings.catch_warnings(record=True)`` with every warning shown, entered after the
    garbage already left is collected: another test's (a leaked ``subprocess.Popen``, an
    unclosed pipe) warns then, outside the recording, so that only what the block itself
    leaves is recorded. Collect inside the block (``gc.collect()``) what it should have left
    no warning behind for."""
    collect_garbage()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
