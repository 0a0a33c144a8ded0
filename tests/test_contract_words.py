"""hw.contract.words: the D and C buffer layouts, in both word representations."""

import numpy as np
import pytest

from hw.contract.words import (
    c_ints,
    c_lanes,
    d_ints,
    d_lanes,
    gather_c,
    m_tiles,
    pack_c,
    pack_d,
    unpack_c,
    unpack_d,
)


def test_pack_d_layout():
    rng = np.random.default_rng(0)
    d = rng.integers(-128, 128, (13, 7)).astype(np.int8)
    w = pack_d(d, 4)
    assert w.shape == (m_tiles(13, 4) * 7, 4)
    assert w[7 + 3, 1] == d[4 + 1, 3]  # word mt*K + k, lane i = D[mt*rows + i, k]
    assert (w[3 * 7:, 1:] == 0).all()  # rows past M are zero
    ints = d_ints(w)
    assert ints[7 + 3] >> 8 & 0xFF == int(d[5, 3]) & 0xFF


def test_unpack_c_both_representations():
    rng = np.random.default_rng(1)
    c = rng.integers(-(2**31), 2**31, (13, 5)).astype(np.int32)
    pad = np.zeros((16, 5), np.int32)
    pad[:13] = c
    lanes = pad.reshape(4, 4, 5).transpose(0, 2, 1).reshape(20, 4)
    assert np.array_equal(unpack_c(lanes, 13, 5, 4), c)
    wide = [sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(row)) for row in lanes]
    assert np.array_equal(c_lanes(wide, 4), lanes)
    assert np.array_equal(unpack_c(wide, 13, 5, 4), c)


def test_inverses():
    rng = np.random.default_rng(2)
    d = rng.integers(-128, 128, (13, 7)).astype(np.int8)
    lanes = pack_d(d, 4)
    assert np.array_equal(d_lanes(d_ints(lanes), 4), lanes)
    assert np.array_equal(unpack_d(lanes, 13, 7, 4), d)
    assert np.array_equal(unpack_d(d_ints(lanes), 13, 7, 4), d)
    c = rng.integers(-(2**31), 2**31, (13, 5)).astype(np.int32)
    assert np.array_equal(unpack_c(pack_c(c, 4), 13, 5, 4), c)
    assert np.array_equal(c_lanes(c_ints(pack_c(c, 4)), 4), pack_c(c, 4))


def test_gather_c_any_order_and_exact_messages():
    rows = 2
    words = [(a + 1) * 0x1_0000_0001 for a in range(4)]  # two lanes per word
    entries = [w | a << 64 for a, w in enumerate(words)]
    assert gather_c(entries[::-1], rows, 4) == words
    with pytest.raises(ValueError) as info:
        gather_c(entries[:3], rows, 4)
    assert str(info.value) == "C word 3 missing from the result logs (1 of 4 missing)"
    with pytest.raises(ValueError) as info:
        gather_c(entries + entries[1:2], rows, 4)
    assert str(info.value) == "C word 1 written twice"
    with pytest.raises(ValueError) as info:
        gather_c(entries, rows, 3)
    assert str(info.value) == "result log entry for C word 3 outside 0..2"
