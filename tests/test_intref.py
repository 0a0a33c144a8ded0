"""sw.intref: integer GEMM reference, D/C buffer layouts, cycle-free core model."""

import numpy as np
import pytest
import torch

from hw.contract import malformed
from sw import compress, intref


def test_gemm_matches_int64():
    rng = np.random.default_rng(0)
    d = rng.integers(-128, 128, (7, 33)).astype(np.int8)
    s = rng.integers(-128, 128, (33, 5)).astype(np.int8)
    c = intref.gemm(d, s)
    assert c.dtype == np.int32
    np.testing.assert_array_equal(c, d.astype(np.int64) @ s.astype(np.int64))
    ct = intref.gemm(torch.from_numpy(d), torch.from_numpy(s))
    np.testing.assert_array_equal(ct, c)


def test_gemm_extremes_no_int8_overflow():
    d = np.full((2, 1000), -128, dtype=np.int8)
    s = np.full((1000, 2), -128, dtype=np.int8)
    assert intref.gemm(d, s)[0, 0] == 128 * 128 * 1000  # would wrap in int8/int16 arithmetic


def test_gemm_rejects():
    def message(d, s):
        with pytest.raises(ValueError) as ei:
            intref.gemm(d, s)
        return str(ei.value)

    assert message(np.zeros((2, 3), np.int8), np.zeros((2, 3), np.int8)) == \
        "gemm: shapes (2, 3) @ (2, 3) do not chain"
    assert message(np.full((1, 1), 300), np.ones((1, 1), np.int8)) == "gemm: D outside int8 range"
    assert message(np.ones((1, 1)), np.ones((1, 1))) == "gemm: D must be integer, got float64"
    big = np.full((1, 140000), -128, dtype=np.int64)
    assert message(big, big.T) == "gemm: result overflows int32"


@pytest.mark.parametrize("rows", [1, 2, 4, 8])
def test_pack_unpack(rows):
    rng = np.random.default_rng(rows)
    m, k = 2 * rows + 1, 5
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = intref.pack_d(d, rows)
    assert len(w) == -(-m // rows) * k
    for mt in range(-(-m // rows)):
        for kk in range(k):
            for i in range(rows):
                lane = (w[mt * k + kk] >> (8 * i)) & 0xFF
                ref = int(d[mt * rows + i, kk]) & 0xFF if mt * rows + i < m else 0
                assert lane == ref
    c = rng.integers(-(2**31), 2**31, (m, 3)).astype(np.int32)
    cw = []
    for mt in range(-(-m // rows)):
        for n in range(3):
            word = 0
            for i in range(rows):
                r = mt * rows + i
                word |= (int(c[r, n]) & 0xFFFFFFFF if r < m else 0) << (32 * i)
            cw.append(word)
    np.testing.assert_array_equal(intref.unpack_c(cw, m, 3, rows), c)


def test_core_model():
    rng = np.random.default_rng(1)
    s = rng.integers(-128, 128, (9, 4)).astype(np.int8)
    s[rng.random(s.shape) < 0.6] = 0
    d = rng.integers(-128, 128, (5, 9)).astype(np.int8)
    w = [int(x) for x in compress.words(compress.encode(s))]
    r = intref.core_model(d, w, m=5, k=9, n=4, rows=2)
    assert r.error_codes == {0}
    np.testing.assert_array_equal(r.c, intref.gemm(d, s))
    assert intref.core_model(d, w, m=5, k=9, n=4, rows=2, c_depth=4).error_codes == {8}
    assert intref.core_model(d, w, m=5, k=9, n=4, s_len=len(w) - 1).error_codes == {4}
    bad = list(w)
    bad[0] = 0
    assert intref.core_model(d, bad, m=5, k=9, n=4).error_codes == {1}
    assert intref.core_model(d, w, m=5, k=8, n=4).error_codes == {2}
    bad = list(w)
    bad[3] = 1
    assert intref.core_model(d, bad, m=5, k=9, n=4).error_codes == {3}
    # longer s_len than the blob is fine for the hardware
    r = intref.core_model(d, w + [0, 0], m=5, k=9, n=4)
    assert r.error_codes == {0}


def test_ideal_cycles():
    assert intref.ideal_cycles(64, 3686, 8, 8) == 8 * 3686 / 8


def test_schedule_cycles():
    s = np.ones((10, 8), dtype=np.int8)
    # 2 M-tiles x 8 items of 10 entries on 4 columns: 4 rounds of 10 cycles, then the four
    # results that finish together leave through the one C port in 4 cycles
    assert intref.schedule_cycles(s, 16, rows=8, cols=4, start_latency=0, drain_latency=0) == 43
    # empty columns still cost one cycle each (zero token) and one C write; dispatch is one
    # item per cycle, so 8 columns start staggered and the port keeps up
    z = np.zeros((10, 8), dtype=np.int8)
    assert intref.schedule_cycles(z, 8, rows=8, cols=8, start_latency=0, drain_latency=0) == 8
    # one long column dominates: dynamic assignment hides the short ones beside it
    s = np.zeros((100, 8), dtype=np.int8)
    s[:, 0] = 1
    s[0, 1:] = 1
    assert intref.schedule_cycles(s, 8, rows=8, cols=2, start_latency=0, drain_latency=0) == 100


REPRO_13_8 = malformed.POINTER_AND_ENTRY  # issue 13 item 8


def test_core_model_pointer_and_entry_violations():
    """Column 0's entry (value 0) streams before the dispatcher reaches the bad ``ptr[6]``:
    the RTL may report 7 as well as 3."""
    r = intref.core_model(None, REPRO_13_8, m=1, k=1, n=6, s_len=11)
    assert r.error_codes == {3, 7}


def test_core_model_columns_after_a_bad_pointer_never_stream():
    w = list(REPRO_13_8)
    w[4] = 2  # ptr[1] = 2 > nnz: column 0 never gets a descriptor
    assert intref.core_model(None, w, m=1, k=1, n=6, s_len=11).error_codes == {3}


def test_core_model_a_column_stops_at_its_first_bad_entry():
    s = np.zeros((4, 2), dtype=np.int8)
    s[[0, 2], 0] = 5
    s[[1, 3], 1] = 7
    w = [int(x) for x in compress.words(compress.encode(s))]
    w[6] |= 9  # column 0, entry 0: index 9 >= K
    w[7] &= 0xFFFF  # column 0, entry 1: value 0 (never reached: the column stopped)
    assert intref.core_model(None, w, m=1, k=4, n=2).error_codes == {5}
    w[9] |= 1 << 24  # column 1, entry 1: reserved bits
    assert intref.core_model(None, w, m=1, k=4, n=2).error_codes == {5, 7}


def test_gemm_exact_across_float32_chunks():
    """Extreme operands across the float32 chunk boundary (K = 1024 products of -128 · -128 sum
    to exactly 2**24): equal to the int64 product."""
    for k in (0, 1, 1023, 1024, 1025, 3000):
        for dv, sv in ((-128, -128), (127, -128), (-128, 127)):
            d = np.full((3, k), dv, np.int8)
            s = np.full((k, 5), sv, np.int8)
            s[1::2, 1] = 0
            want = (d.astype(np.int64) @ s.astype(np.int64)).astype(np.int32)
            got = intref.gemm(d, s)
            assert got.dtype == np.int32 and np.array_equal(got, want)
