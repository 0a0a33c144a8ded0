"""hw.contract.codes: the numbers are the documented ones and the gateware uses them."""

from hw.contract.codes import BINS, LoaderError, SelectError, SelectMode


def test_loader_error_numbers():
    assert [(e.name, int(e)) for e in LoaderError] == [
        ("NONE", 0), ("MAGIC", 1), ("SHAPE", 2), ("PTR", 3), ("TRUNC", 4), ("INDEX", 5),
        ("ORDER", 6), ("ENTRY", 7), ("FIT", 8)]
    assert LoaderError.ORDER.text == "entry indices not strictly increasing"


def test_select_numbers():
    assert [int(m) for m in SelectMode] == [0, 1, 2, 3]
    assert [(e.name, int(e)) for e in SelectError] == [
        ("NONE", 0), ("SHAPE", 1), ("KEEP", 2), ("SHORT", 3), ("LONG", 4), ("OVERFLOW", 5),
        ("NO_THRESHOLD", 6), ("BAD_THRESHOLD", 7), ("NO_INDEX", 8)]
    assert BINS == 129


def test_gateware_enums_mirror_the_contract():
    from hw import threshold_select as ts

    assert {m.name: m.value for m in ts.Mode} == {m.name: int(m) for m in SelectMode}
    assert {e.name: e.value for e in ts.ErrorCode} == {e.name: int(e) for e in SelectError}
    assert ts.Mode.as_shape().width == 2 and ts.ErrorCode.as_shape().width == 4
