"""hw.contract.malformed: the shared case table says what the software model says."""

import pytest

from hw.contract import malformed
from hw.contract.codes import LoaderError
from sw import intref

GEOMETRIES = [dict(rows=2, d_depth=64, s_depth=64, c_depth=16),
              dict(rows=8, d_depth=4608, s_depth=8192, c_depth=512)]


@pytest.mark.parametrize("geom", GEOMETRIES, ids=["2-rows-small", "8-rows"])
def test_codes_are_the_core_models(geom):
    table = malformed.cases(**geom)
    for c in table:
        ref = intref.core_model(None, list(c.words), m=c.m, k=c.k, n=c.n, s_len=c.s_len,
                                **geom)
        assert ref.error_codes == set(c.codes), c.name
    assert {c.code for c in table} == set(LoaderError) - {LoaderError.NONE}
    assert len({c.name for c in table}) == len(table)


def test_race_case_allows_both_codes():
    (case,) = [c for c in malformed.cases(**GEOMETRIES[0]) if c.name == "pointer and entry"]
    assert case.codes == {LoaderError.PTR, LoaderError.ENTRY} and case.code == LoaderError.PTR
