"""hw.params.check_int: the exact messages of the shared constructor check."""

import pytest

from hw.params import check_int


def test_accepts_ints_in_range():
    assert check_int("X", "a", 3, minimum=1, maximum=3) == 3
    assert check_int("X", "a", -5) == -5


@pytest.mark.parametrize("value,exc,msg", [
    (0, ValueError, "Unit: depth must be >= 1, not 0"),
    (9, ValueError, "Unit: depth must be <= 8, not 9"),
    (2.0, TypeError, "Unit: depth must be an int, not 2.0"),
    ("4", TypeError, "Unit: depth must be an int, not '4'"),
    (True, TypeError, "Unit: depth must be an int, not True"),
    (None, TypeError, "Unit: depth must be an int, not None"),
])
def test_rejects(value, exc, msg):
    with pytest.raises(exc) as info:
        check_int("Unit", "depth", value, minimum=1, maximum=8)
    assert str(info.value) == msg
