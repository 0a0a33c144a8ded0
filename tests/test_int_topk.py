"""Property tests of ``sw.int_topk`` against independent sort-based formulas."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sw import int_topk

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def int8_arrays(draw, max_side=12, ndim=None):
    nd = ndim or draw(st.integers(1, 3))
    shape = draw(hnp.array_shapes(min_dims=nd, max_dims=nd, min_side=1, max_side=max_side))
    # few distinct magnitudes -> many ties; sometimes the full range incl. -128
    pool = draw(st.sampled_from([
        st.integers(-128, 127),
        st.sampled_from([0, 1, -1, 5, -5, 127, -127, -128]),
        st.sampled_from([0, 3, -3]),
        st.just(0),
    ]))
    return draw(hnp.arrays(np.int8, shape, elements=pool))


def sort_based_mask(q, k):
    """Independent formula: stable sort by (-|x|, stream position); keep the first k."""
    flat = np.abs(q.astype(np.int64)).ravel()
    order = sorted(range(flat.size), key=lambda i: (-flat[i], i))
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(q.shape)


@SETTINGS
@given(data=st.data())
def test_mask_is_topk_with_tie_rule(data):
    q = data.draw(int8_arrays())
    k = data.draw(st.integers(0, q.size))
    mask = int_topk.select_mask(q, k)
    assert mask.shape == q.shape
    assert int(mask.sum()) == k  # kept count exact
    np.testing.assert_array_equal(mask, sort_based_mask(q, k))


@SETTINGS
@given(data=st.data())
def test_threshold_matches_sorted_kth(data):
    q = data.draw(int8_arrays())
    k = data.draw(st.integers(0, q.size))
    t, ties = int_topk.threshold_int(q, k)
    mags = np.sort(np.abs(q.astype(np.int64)).ravel())[::-1]
    if k == 0:
        assert (t, ties) == (128, 0)
    else:
        assert t == mags[k - 1]
        assert ties == k - int((mags > t).sum())
        assert 1 <= ties <= int((mags == t).sum())
    assert int_topk.kth_magnitude_int(q, k) == t


@SETTINGS
@given(data=st.data())
def test_held_threshold_rule(data):
    q = data.draw(int8_arrays())
    t = data.draw(st.integers(0, 128))
    ties = data.draw(st.integers(0, q.size + 3))
    mask = int_topk.select_mask_threshold(q, t, ties)
    mag = np.abs(q.astype(np.int64))
    n_gt, n_eq = int((mag > t).sum()), int((mag == t).sum())
    assert int(mask.sum()) == n_gt + min(ties, n_eq)
    assert np.all(mask[mag > t]) and not np.any(mask[mag < t])
    # kept ties are a prefix in row-major order
    eq_kept = mask.ravel()[(mag == t).ravel()]
    assert list(eq_kept) == sorted(eq_kept, reverse=True)
    # on the tensor it came from, a held (t, ties) reproduces the fresh selection
    k = data.draw(st.integers(0, q.size))
    np.testing.assert_array_equal(
        int_topk.select_mask_threshold(q, *int_topk.threshold_int(q, k)),
        int_topk.select_mask(q, k))


def decode_words(words, shape):
    """Tiny independent decoder of the layout (for when sw.compress is absent)."""
    K, N = shape
    assert words[0] == int_topk.MAGIC and words[1] == K | (N << 16)
    nnz = int(words[2])
    ptr = words[3 : 4 + N].astype(np.int64)
    ent = words[4 + N :]
    assert len(ent) == nnz and ptr[0] == 0 and ptr[-1] == nnz
    s = np.zeros(shape, dtype=np.int64)
    for n in range(N):
        rows = []
        for e in ent[ptr[n] : ptr[n + 1]]:
            r, v = int(e) & 0xFFFF, (int(e) >> 16) & 0xFF
            assert int(e) >> 24 == 0 and v != 0
            rows.append(r)
            s[r, n] = v - 256 if v >= 128 else v
        assert rows == sorted(set(rows))
    return s


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_compress_selected(data):
    s = data.draw(int8_arrays(ndim=2))
    k = data.draw(st.integers(0, s.size))
    blob = int_topk.compress_selected(s, k)
    words = np.frombuffer(blob, dtype="<u4")
    # the selection runs in stream order = column-major of S = row-major of S.T
    keep = sort_based_mask(s.T, k).T
    expected = np.where(keep, s, 0)
    np.testing.assert_array_equal(decode_words(words, s.shape), expected)
    assert int(words[2]) == int((expected != 0).sum()) <= k
    assert len(words) == int_topk.blob_words(s.shape, words[2])
    try:
        from sw import compress
    except ImportError:  # pragma: no cover
        return
    assert blob == compress.encode(expected)
    np.testing.assert_array_equal(compress.decode(blob, s.shape), expected)


def test_stream_order_is_column_major():
    s = np.arange(6).reshape(2, 3)
    assert list(int_topk.stream_order(s)) == [0, 3, 1, 4, 2, 5]


def test_k_from_density():
    assert int_topk.k_from_density(0, 10) == 0
    assert int_topk.k_from_density(1, 10) == 10
    assert int_topk.k_from_density(0.3, 10) == 3
    assert int_topk.k_from_density(0.31, 10) == 4
    assert int_topk.k_from_density(0.5, 0) == 0
    for bad in (-0.1, 1.1, float("nan"), "x"):
        with pytest.raises(ValueError):
            int_topk.k_from_density(bad, 10)


@SETTINGS
@given(d=st.floats(0, 1), n=st.integers(0, 100000))
def test_k_from_density_matches_topk(d, n):
    k = int_topk.k_from_density(d, n)
    assert 0 <= k <= n
    assert abs(k - d * n) < 1 + 1e-6
    assert k >= math.floor(d * n - 1e-6)
    from sw.topk import kept_count

    assert k == kept_count(n, d)


def test_extremes_and_errors():
    q = np.array([-128, 127, -127, 0], dtype=np.int8)
    assert int_topk.threshold_int(q, 1) == (128, 1)
    assert list(int_topk.select_mask(q, 2)) == [True, True, False, False]
    assert list(int_topk.select_mask(q, 3)) == [True, True, True, False]
    h = int_topk.histogram_int(q)
    assert len(h) == 129 and h[128] == 1 and h[127] == 2 and h[0] == 1
    with pytest.raises(ValueError):
        int_topk.select_mask(q, 5)
    with pytest.raises(ValueError):
        int_topk.select_mask(q, -1)
    with pytest.raises(ValueError):
        int_topk.select_mask(np.array([1.5]), 1)
    with pytest.raises(ValueError):
        int_topk.select_mask(np.array([200]), 1)
    with pytest.raises(ValueError):
        int_topk.select_mask_threshold(q, 129, 0)
    # all-zero: t = 0, every zero "kept", the blob has no entries
    z = np.zeros((3, 4), dtype=np.int8)
    assert int_topk.threshold_int(z, 5) == (0, 5)
    words = np.frombuffer(int_topk.compress_selected(z, 12), dtype="<u4")
    assert words[2] == 0 and len(words) == 4 + 4


def test_int16():
    rng = np.random.default_rng(0)
    q = rng.integers(-(1 << 15), 1 << 15, size=500)
    q[::7] = 1234
    for k in (0, 1, 77, 250, 500):
        mask = int_topk.select_mask(q, k, bits=16)
        np.testing.assert_array_equal(mask, sort_based_mask(q, k))


@SETTINGS
@given(data=st.data())
def test_matches_pytorch_golden_model(data):
    """The integer reference and ``sw.topk.topk_mask`` (whole tensor) keep the same set."""
    import torch

    from sw.topk import topk_mask

    q = data.draw(int8_arrays())
    d = data.draw(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0]))
    k = int_topk.k_from_density(d, q.size)
    ref = topk_mask(torch.from_numpy(q.copy()), d, "nchw").numpy()
    np.testing.assert_array_equal(int_topk.select_mask(q, k), ref)


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_transposed_blob_same_mask(data):
    s = data.draw(int8_arrays(ndim=2))
    k = data.draw(st.integers(0, s.size))
    t, ties = int_topk.threshold_int(s, k)
    fwd = decode_words(np.frombuffer(int_topk.compress_threshold(s, t, ties), "<u4"), s.shape)
    bwd = decode_words(np.frombuffer(int_topk.compress_transposed(s, t, ties), "<u4"),
                       s.T.shape)
    np.testing.assert_array_equal(bwd, fwd.T)
    # the cut rule: a tie of S.T at (r, c) is kept iff S's stream position of (c, r) <= cut's
    cut = int_topk.last_kept_tie(s, t, ties)
    K = s.shape[0]
    mag = np.abs(s.astype(np.int64))
    fmask = int_topk.select_mask_threshold(s.T, t, ties).T  # forward keep mask, [K, N]
    for r, c in zip(*np.nonzero(mag.T == t), strict=True):
        kept = cut is not None and r * K + c <= cut[1] * K + cut[0]
        assert kept == fmask[c, r]


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_stream_matrix_and_indexed_rule(data):
    """``stream_matrix`` streams a tensor in its row-major order; an indexed pass over any
    re-arrangement with duplicates (the source index of each element) keeps exactly the
    selected elements, with the cut position the tensor's pass reports."""
    q = data.draw(int8_arrays())
    k = data.draw(st.integers(0, q.size))
    sm = int_topk.stream_matrix(q)
    np.testing.assert_array_equal(int_topk.stream_order(sm), q.ravel())
    t, ties = int_topk.threshold_int(q, k)
    cut = int_topk.last_kept_tie_index(q, t, ties)
    stream_cut = int_topk.last_kept_tie(sm, t, ties)
    assert (None if stream_cut is None else stream_cut[1] * sm.shape[0] + stream_cut[0]) == cut
    pick = np.asarray(data.draw(st.lists(st.integers(0, q.size - 1), min_size=1,
                                         max_size=3 * q.size)))
    dup = q.ravel()[pick].reshape(1, -1)
    keep = int_topk.select_mask_indexed(dup, pick.reshape(1, -1), t, cut)
    np.testing.assert_array_equal(keep.ravel(), int_topk.select_mask(q, k).ravel()[pick])
    blob = int_topk.compress_indexed(dup, pick.reshape(1, -1), t, cut)
    sel = np.where(int_topk.select_mask(q, k), q, 0).ravel()[pick].reshape(1, -1)
    np.testing.assert_array_equal(np.frombuffer(blob, "<u4"), int_topk.encode_csc_words(sel))


def test_stream_matrix_and_index_errors():
    with pytest.raises(ValueError, match="65537 elements do not fit a"):  # 65537 is prime
        int_topk.stream_matrix(np.zeros(65537, np.int8))
    with pytest.raises(ValueError, match="index shape"):
        int_topk.select_mask_indexed(np.zeros((2, 3), np.int8), np.zeros(6), 0, 1)
