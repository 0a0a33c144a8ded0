"""hw.contract.cycles: the two lower bounds and the select unit's formula."""

import numpy as np
import pytest

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


def test_select_cycles_with_the_kept_matrix():
    """``kept`` makes pass 2 exact (RTL equality: tests/test_threshold_select.py); the estimate
    from ``nnz`` is close (within 1 here with 8 banks, where the writer keeps up); HELD skips pass
    1, THRESHOLD is pass 1 without the hand-over; pass 1 takes ``lanes`` elements a cycle."""
    rng = np.random.default_rng(3)
    s = np.where(rng.random((576, 64)) < 0.1, 5, 0)
    nnz = int((s != 0).sum())
    for banks, slack in ((1, 4), (8, 1)):  # one bank: the writer's backlog at the end
        for mode in SelectMode:
            exact = select_cycles(576, 64, 8, mode=mode, banks=banks, kept=s)
            estimate = select_cycles(576, 64, 8, mode=mode, banks=banks, nnz=nnz)
            assert abs(exact - estimate) <= slack, (banks, mode, exact, estimate)
    full = select_cycles(576, 64, 8, banks=8, kept=s)
    held = select_cycles(576, 64, 8, mode=SelectMode.HELD, banks=8, kept=s)
    threshold = select_cycles(576, 64, 8, mode=SelectMode.THRESHOLD, banks=8, kept=s)
    assert full - held == 576 * 64 // 8 + 135 and threshold == full - held + 13 - 1
    assert select_cycles(576, 64, 8, mode=SelectMode.THRESHOLD, by_index=True) == \
        threshold + 1 + 576 * 64 // 8  # THRESHOLD's cut pass: one more stream, no writes
    # a dense matrix with short columns: the writer is behind, the FIFO throttles the input
    dense = np.ones((3, 400))
    exact = select_cycles(3, 400, 8, mode=SelectMode.HELD, banks=8, kept=dense)
    assert exact > 150 + 4 + 1 + 5  # more than one beat a cycle would allow
    with pytest.raises(ValueError, match=r"kept has shape \(3, 4\), not \(4, 3\)"):
        select_cycles(4, 3, 8, kept=np.ones((3, 4)))


def test_select_cycles_short_columns():
    """Several column ends in a beat cost ``ceil(ends / banks)`` writer cycles, not one
    each (the estimate's pointer cycles are exact)."""
    # rows 4, lanes 8: two ends per beat; banks 8: one pointer cycle per beat
    assert select_cycles(4, 40, 8, mode=SelectMode.HELD, nnz=0, banks=8) == \
        3 + 3 + 20 + 4 + 1
    assert select_cycles(4, 40, 8, mode=SelectMode.HELD, nnz=0, banks=1) == \
        3 + 3 + 40 + 4 + 4


def test_exposed_select_cycles():
    # the first blob is exposed; blob g+1 hides behind GEMM g up to its length
    assert exposed_select_cycles([100, 10, 50], [30, 40, 60]) == 30 + 0 + 50
    assert exposed_select_cycles([], []) == 0


def test_schedule_cycles_many_is_schedule_cycles_operation_by_operation():
    """The batched event model (masked numpy steps over operations of similar length) gives
    the scalar model's number for every operation: empty columns, empty S, one M row, tall
    operations and a spread of lengths in one call."""
    import numpy as np

    from hw.contract.cycles import schedule_cycles, schedule_cycles_many

    rng = np.random.default_rng(5)
    ss, ms = [], []
    for _ in range(300):
        k, n = int(rng.integers(1, 200)), int(rng.integers(0, 60))
        s = (rng.random((k, n)) < rng.random() * rng.random((1, n))).astype(np.int8)
        ss.append(s)
        ms.append(int(rng.integers(1, 900)))
    ss += [np.zeros((5, 3), np.int8), np.ones((40, 16), np.int8)]
    ms += [1, 2000]
    nnz = [(s != 0).sum(axis=0) for s in ss]
    for slots in (True, False):
        got = schedule_cycles_many(nnz, ms, slots=slots)
        assert got.tolist() == [schedule_cycles(s, m, slots=slots)
                                for s, m in zip(ss, ms, strict=True)]
    assert schedule_cycles_many([], []).tolist() == []


def test_slots_hand_out_like_the_chain_from_their_later_start():
    """Items of at least WANT_AHEAD cycles: the slots' schedule is the chain's, 3 cycles later
    (start latency 16 against 13); items shorter than that leave their column idle for the
    rest (less one cycle), unless the dispatcher's one item per cycle is the limit anyway."""
    import numpy as np

    from hw.column_issue import WANT_AHEAD
    from hw.contract.cycles import schedule_cycles

    s = np.ones((20, 24), np.int8)
    assert schedule_cycles(s, 64) == schedule_cycles(s, 64, slots=False, start_latency=13) + 3
    # 2 PE columns, 6 items of 2 cycles: one column gets items 0, 2, 4 (the other 1, 3, 5),
    # each WANT_AHEAD - 1 cycles after the one before
    s = np.ones((2, 6), np.int8)
    chain = schedule_cycles(s, 1, rows=1, cols=2, slots=False, start_latency=0, drain_latency=0)
    slots = schedule_cycles(s, 1, rows=1, cols=2, start_latency=0, drain_latency=0)
    assert chain == 7 and slots == 1 + 2 * (WANT_AHEAD - 1) + 2
