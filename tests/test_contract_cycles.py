"""hw.contract.cycles: the two lower bounds and the select unit's formula."""

from hw.contract.codes import SelectMode
from hw.contract.cycles import (
    exposed_select_cycles,
    ideal_cycles,
    mac_bound_cycles,
    select_cycles,
)


def test_dataflow_bound_pads_m_tiles_mac_bound_does_not():
    assert ideal_cycles(64, 3686, 8, 8) == mac_bound_cycles(64 * 3686, 64) == 3686
    assert ideal_cycles(10, 80, 8, 8) == 2 * 80 / 8  # two M-tiles
    assert mac_bound_cycles(10 * 80, 64) == 12.5


def test_select_cycles_documented_figures():
    assert select_cycles(576, 64, 8, nnz=3687) == 9372
    assert select_cycles(576, 64, 8, mode=SelectMode.HELD, nnz=3687) == 4629
    assert select_cycles(576, 64, 8, nnz=11060) == 15888  # one write a cycle: write-bound
    assert select_cycles(576, 64, 8, nnz=11060, banks=8) == 9369  # lanes-wide: input-bound


def test_exposed_select_cycles():
    # the first blob is exposed; blob g+1 hides behind GEMM g up to its length
    assert exposed_select_cycles([100, 10, 50], [30, 40, 60]) == 30 + 0 + 50
    assert exposed_select_cycles([], []) == 0
