"""Top-K selection: exact counts, the stream-order tie rule, selection groups, periodic holding."""

from __future__ import annotations

import math

import pytest
import torch

from sw.topk import (
    ThresholdHolder,
    kept_count,
    kth_magnitude,
    topk,
    topk_channels,
    topk_channels_mask,
    topk_filters,
    topk_filters_mask,
    topk_mask,
)


def reference_mask(x: torch.Tensor, density: float) -> torch.Tensor:
    """Independent reference: stable sort by descending magnitude, first k in stream order."""
    flat = x.reshape(-1).tolist()
    n = len(flat)
    k = kept_count(n, density)
    order = sorted(range(n), key=lambda i: (-abs(flat[i]), i))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[:k]] = True
    return keep.reshape(x.shape)


@pytest.mark.parametrize("n,d,k", [(10, 0.1, 1), (10, 0.7, 7), (10, 1 - 0.3, 7), (10, 0.71, 8),
                                   (7, 0.5, 4), (5, 0.0, 0), (5, 1.0, 5), (1000, 1 - 0.9, 100)])
def test_kept_count(n, d, k):
    assert kept_count(n, d) == k


def test_kept_count_is_ceil():
    for n in range(1, 60):
        for d in (0.05, 0.1, 0.25, 0.33, 0.5, 0.9):
            assert kept_count(n, d) == math.ceil(round(d * n, 6))


@pytest.mark.parametrize("density", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_exact_count_random(density):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 5, generator=g)
    m = topk_mask(x, density)
    assert int(m.sum()) == kept_count(x.numel(), density)
    assert torch.equal(m, reference_mask(x, density))


def test_ties_first_in_stream_order():
    x = torch.tensor([1.0, -2.0, 2.0, 0.5, -2.0, 2.0, 3.0])
    # k = ceil(0.5 * 7) = 4; t = 2; one element > 2 (3.0); the first three of the four 2's kept
    m = topk_mask(x, 0.5)
    assert m.tolist() == [False, True, True, False, True, False, True]
    y = topk(x, 0.5)
    assert y.tolist() == [0.0, -2.0, 2.0, 0.0, -2.0, 0.0, 3.0]


def test_ties_heavy_matches_reference():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(-3, 4, (6, 2, 4, 4), generator=g).float()  # lots of ties, zeros
    for d in (0.05, 0.3, 0.5, 0.77, 0.95):
        m = topk_mask(x, d)
        assert int(m.sum()) == kept_count(x.numel(), d)
        assert torch.equal(m, reference_mask(x, d))


def test_zero_threshold_keeps_zeros_first():
    x = torch.tensor([0.0, 0.0, 5.0, 0.0])
    m = topk_mask(x, 0.5)  # k = 2: 5.0 and the first zero
    assert m.tolist() == [True, False, True, False]


def test_integer_input_and_int8_min():
    x = torch.tensor([-128, 127, 3, -4], dtype=torch.int8)
    y = topk(x, 0.25)
    assert y.tolist() == [-128, 0, 0, 0]
    assert y.dtype == torch.int8


@pytest.mark.parametrize("dims", ["chw", "hw"])
def test_groups(dims):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 5, 5, generator=g)
    d = 0.2
    m = topk_mask(x, d, dims)
    groups = x.reshape(3, -1) if dims == "chw" else x.reshape(12, -1)
    mg = m.reshape(groups.shape)
    for i in range(groups.shape[0]):
        assert int(mg[i].sum()) == kept_count(groups.shape[1], d)
        assert torch.equal(mg[i], reference_mask(groups[i], d))


def test_nchw_differs_from_per_sample():
    x = torch.ones(2, 1, 2, 2)
    x[0] *= 10  # the whole-tensor Top-K takes everything from sample 0
    assert int(topk_mask(x, 0.5, "nchw")[0].sum()) == 4
    assert int(topk_mask(x, 0.5, "chw")[0].sum()) == 2


def test_random_is_seeded_and_exact():
    x = torch.arange(100.0)
    a = topk_mask(x, 0.3, "random", generator=torch.Generator().manual_seed(5))
    b = topk_mask(x, 0.3, "random", generator=torch.Generator().manual_seed(5))
    c = topk_mask(x, 0.3, "random", generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.sum()) == 30
    assert not torch.equal(a, topk_mask(x, 0.3))  # not the magnitude Top-K


def test_kth_magnitude():
    x = torch.tensor([[1.0, -7.0], [3.0, -3.0]])
    assert kth_magnitude(x, 1).item() == 7.0
    assert kth_magnitude(x, 2).item() == 3.0
    assert kth_magnitude(x, 3).item() == 3.0
    assert kth_magnitude(x, 4).item() == 1.0
    assert kth_magnitude(x, 2).ndim == 0
    with pytest.raises(ValueError, match="k must lie"):
        kth_magnitude(x, 0)
    with pytest.raises(ValueError, match="k must lie"):
        kth_magnitude(x, 5)


def test_topk_channels():
    w = torch.zeros(2, 3, 2, 2)
    # L1 norms per (f, c): f0 = [4, 1, 8], f1 = [2, 8, 0.5]
    for (f, c), v in {(0, 0): 1.0, (0, 1): 0.25, (0, 2): 2.0, (1, 0): 0.5, (1, 1): -2.0,
                      (1, 2): 0.125}.items():
        w[f, c] = v
    y = topk_channels(w, 0.5)  # k = 3 slices: (0,2), (1,1) [tie at 8, both kept], (0,0)
    kept = {(f, c) for f in range(2) for c in range(3) if y[f, c].abs().sum() > 0}
    assert kept == {(0, 2), (1, 1), (0, 0)}
    assert torch.equal(y[0, 2], w[0, 2])  # whole slices, values intact
    # different filters keep different channels
    assert (0, 0) in kept and (1, 0) not in kept


def test_topk_channels_tie_rule():
    w = torch.ones(2, 2, 3, 3)  # all four slices tie
    y = topk_channels(w, 0.5)
    kept = [(f, c) for f in range(2) for c in range(2) if y[f, c].abs().sum() > 0]
    assert kept == [(0, 0), (0, 1)]


def test_bad_input():
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="density"):
        topk(x, 1.5)
    with pytest.raises(ValueError, match="density"):
        topk(x, -0.1)
    with pytest.raises(ValueError, match="unknown dims"):
        topk(x, 0.5, "nhwc")
    with pytest.raises(ValueError, match="dims='hw'"):
        topk(x, 0.5, "hw")
    x[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        topk(x, 0.5)


def test_threshold_holder_period():
    h = ThresholdHolder(period=3)
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(1000, generator=g)
    m0 = h.mask(x0, 0.1)
    assert h.recomputed and int(m0.sum()) == 100
    t0 = h.threshold.clone()
    assert t0.item() == pytest.approx(kth_magnitude(x0, 100).item())
    # held: a tensor scaled by 2 keeps everything with |x| >= t0 (far more than 100)
    x1 = 2 * x0
    m1 = h.mask(x1, 0.1)
    assert not h.recomputed
    assert torch.equal(m1, x1.abs() >= t0)
    assert int(m1.sum()) > 100
    assert torch.equal(h.threshold, t0)
    h.mask(x1, 0.1)
    m3 = h.mask(x1, 0.1)  # call 3: recomputed
    assert h.recomputed and int(m3.sum()) == 100
    assert h.threshold.item() == pytest.approx(2 * t0.item())


def test_threshold_holder_same_data_same_mask():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(50, 20, generator=g)
    h = ThresholdHolder(period=5)
    first = h.mask(x, 0.25)
    for _ in range(4):
        assert torch.equal(h.mask(x, 0.25), first)  # no ties: held == exact


def test_threshold_holder_bad_period():
    with pytest.raises(ValueError, match="period"):
        ThresholdHolder(period=0)


# ------------------------------------------------------------------ the authors' variants


def test_ties_keep_keeps_every_element_at_the_threshold():
    x = torch.tensor([5.0, -3.0, 3.0, 1.0, 3.0, 0.0, -7.0, 2.0])
    # k = ceil(0.5 * 8) = 4: 7, 5 and two of the three 3s (stream order) ...
    assert topk_mask(x, 0.5).tolist() == [True, True, True, False, False, False, True, False]
    # ... or, as the authors' drop_nhwc (|x| >= k-th magnitude), all three: 5 kept
    keep = topk_mask(x, 0.5, ties="keep")
    assert keep.tolist() == [True, True, True, False, True, False, True, False]
    assert torch.equal(keep, x.abs() >= kth_magnitude(x, 4))
    # a zero threshold keeps every zero too (theirs), per group with "chw"
    z = torch.tensor([[0.0, 0.0, 1.0, 0.0], [4.0, 3.0, 2.0, 1.0]])
    assert topk_mask(z, 0.5, "chw", ties="keep").tolist() == [[True, True, True, True],
                                                               [True, True, False, False]]
    with pytest.raises(ValueError, match="unknown ties 'some'"):
        topk_mask(x, 0.5, ties="some")


def test_ties_keep_on_the_fast_path_matches_the_definition():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-50, 50, (1 << 16,), generator=g).float()  # many ties
    keep = topk_mask(x, 0.1, ties="keep")
    t = kth_magnitude(x, kept_count(x.numel(), 0.1))
    assert torch.equal(keep, x.abs() >= t) and int(keep.sum()) > kept_count(x.numel(), 0.1)
    assert int(topk_mask(x, 0.1).sum()) == kept_count(x.numel(), 0.1)


def test_topk_filters_keeps_whole_filters_by_l1_norm():
    w = torch.zeros(5, 2, 2, 2)
    for f, v in enumerate([1.0, -4.0, 2.0, 4.0, 3.0]):  # filter L1 norms 8v: 8, 32, 16, 32, 24
        w[f] = v
    y = topk_filters(w, 0.5)  # k = ceil(0.5 * 5) = 3 filters: 1, 3 (tie at 32), 4
    kept = [f for f in range(5) if y[f].abs().sum() > 0]
    assert kept == [1, 3, 4] and torch.equal(y[kept], w[kept])
    assert [f for f in range(5) if topk_filters(w, 0.3)[f].abs().sum() > 0] == [1, 3]
    w[4] = 4.0  # three filters tie at 32, k = 2: exactly 2 in filter order, or all 3 (theirs)
    assert [f for f in range(5) if topk_filters(w, 0.4)[f].any()] == [1, 3]
    assert [f for f in range(5) if topk_filters(w, 0.4, ties="keep")[f].any()] == [1, 3, 4]
    m, t = topk_filters_mask(w, 0.4, return_threshold=True)
    assert float(t) == 32.0 and m.shape == w.shape
    lin = torch.tensor([[1.0, -5.0], [3.0, 0.5]])  # a linear weight: element-wise
    assert topk_filters_mask(lin, 0.5).tolist() == [[False, True], [True, False]]


def test_channel_ties_keep():
    w = torch.ones(2, 2, 3, 3)  # all four slices tie
    assert int(topk_channels_mask(w, 0.5)[:, :, 0, 0].sum()) == 2
    assert int(topk_channels_mask(w, 0.5, ties="keep")[:, :, 0, 0].sum()) == 4


def test_holder_filter_structure_and_held_mask():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(8, 3, 3, 3, generator=g)
    h = ThresholdHolder(period=2, structured="filter")
    m0 = h.mask(w, 0.5)
    assert torch.equal(m0, topk_filters_mask(w, 0.5)) and h.recomputed
    assert torch.equal(h.held_mask(w), m0)  # the held threshold on the same weights
    w2 = w.clone()
    w2[0] *= 10  # held call: filter 0 now above the threshold whatever it was
    m1 = h.mask(w2, 0.5)
    assert not h.recomputed and bool(m1[0].all())
    assert ThresholdHolder().held_mask(w) is None  # nothing held yet
    with pytest.raises(ValueError, match="unknown structure 'rows'"):
        ThresholdHolder(structured="rows")


from hypothesis import given, settings  # noqa: E402  (the property tests below)
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    density=st.floats(0.0, 1.0),
    dims=st.sampled_from(["nchw", "chw", "hw"]),
    seed=st.integers(0, 2**16),
    levels=st.integers(1, 6),
)
def test_property_matches_sorted_reference(shape, density, dims, seed, levels):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-levels, levels + 1, shape, generator=g).float()  # many ties and zeros
    m = topk_mask(x, density, dims)
    groups = {"nchw": 1, "chw": shape[0], "hw": shape[0] * shape[1]}[dims]
    xg, mg = x.reshape(groups, -1), m.reshape(groups, -1)
    for i in range(groups):
        assert torch.equal(mg[i], reference_mask(xg[i], density))
    y = topk(x, density, dims)
    assert torch.equal(y, torch.where(m, x, 0.0))


# --------------------------------------------------------------------------- fast exact path


def sorted_reference_mask(x: torch.Tensor, density: float) -> torch.Tensor:
    """Reference for large tensors: stable descending sort of |x| (ties in stream order)."""
    flat = x.reshape(-1)
    k = kept_count(flat.numel(), density)
    order = torch.sort(-flat.abs().double(), stable=True).indices[:k]
    m = torch.zeros(flat.numel(), dtype=torch.bool)
    m[order] = True
    return m.reshape(x.shape)


def _large_cases():
    g = torch.Generator().manual_seed(11)
    n = 40_000  # above sw.topk._FAST_MIN: the sampled-bracket path
    return {
        "randn": torch.randn(4, 10, 1000, generator=g),
        "relu": torch.relu(torch.randn(n, generator=g)),  # half zeros
        "few_levels": torch.randint(-3, 4, (n,), generator=g).float(),  # massive ties
        "all_zero": torch.zeros(n),
        "mostly_zero": torch.cat([torch.zeros(n - 500), torch.randn(500, generator=g)]),
        "float64": torch.randn(n, generator=g, dtype=torch.float64),
        "sorted": torch.linspace(-1, 1, n),  # strided sample of a monotone layout
    }


@pytest.mark.parametrize("case", list(_large_cases()))
@pytest.mark.parametrize("density", [0.0005, 0.01, 0.1, 0.5, 0.97])
def test_fast_path_matches_sorted_reference(case, density):
    x = _large_cases()[case]
    m, t = topk_mask(x, density, return_threshold=True)
    ref = sorted_reference_mask(x, density)
    assert torch.equal(m, ref)
    k = kept_count(x.numel(), density)
    assert t.shape == (1,) and t.dtype == x.dtype
    assert t.item() == kth_magnitude(x, k).item()


def test_fast_path_bracket_miss_falls_back(monkeypatch):
    import sw.topk as tk

    x = _large_cases()["randn"]
    monkeypatch.setattr(tk, "_Z", -50.0)  # a bracket that cannot contain the threshold
    k = kept_count(x.numel(), 0.1)
    assert tk._flat_topk(x.abs().reshape(-1), k) is None
    assert torch.equal(topk_mask(x, 0.1), sorted_reference_mask(x, 0.1))


def test_holder_select_fast_and_held_paths():
    g = torch.Generator().manual_seed(12)
    x = torch.relu(torch.randn(8, 8, 32, 32, generator=g))
    h = ThresholdHolder(period=2)
    m, idx = h.select(x, 0.1)
    assert m is None and idx is not None  # fast exact path hands back indices
    ref = sorted_reference_mask(x, 0.1)
    assert torch.equal(idx, ref.reshape(-1).nonzero().reshape(-1))
    t = h.threshold
    x2 = 1.5 * x
    m2, idx2 = h.select(x2, 0.1)  # held: |x| >= t, zeros never kept
    assert idx2 is None and torch.equal(m2, (x2.abs() >= t) & (x2 != 0))
    h.threshold = torch.zeros(1)
    h.calls = 1
    m3, _ = h.select(x2, 0.1)  # held zero threshold: every non-zero, no zero
    assert torch.equal(m3, x2 != 0)
    assert torch.equal(ThresholdHolder(period=1).mask(x, 0.1), ref)
