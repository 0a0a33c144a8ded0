"""Fused packing kernels (sw.fused): bit-identical to the ATen route, on the AVX-512 and the
portable paths, and the layers train identically with and without them."""

import pytest
import torch

from sw import fused, layers
from sw.fused import Held

pytestmark = pytest.mark.skipif(not fused.available(), reason=f"sw.fused: {fused.status()}")

PATHS = ["vector", "portable"]


def _path(name):
    return fused.portable() if name == "portable" else _nothing()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-4, 5, (n,), generator=g).float() * 0.5  # many ties and zeros
    x[::7] = -0.0
    return x


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 100, 65535, 65536, 65537, 200003])
def test_held_pack_and_unpack_match_aten(path, n):
    x = _data(n, n)
    with _path(path):
        for t in (0.0, 0.5, 1.5, 2.0):
            a = x.abs()
            m = (a >= t) if t > 0 else (a > 0)
            ref = layers._compact(x, m, None, True)
            dense = torch.full((n + 3,), 9.0)
            r = fused.pack(x, Held(t), True, dense)
            if ref[2] == "idx":  # the index format is smaller: left to the ATen route
                assert r is None
                continue
            assert torch.equal(r[0], ref[0]) and torch.equal(r[1], ref[1]) and r[2] == "bits"
            assert torch.equal(dense[:n], torch.where(m, x, 0.0)) and dense[n:].eq(9).all()
            out = fused.unpack_bits(r[0], r[1], n, torch.full((n,), 9.0))
            assert torch.equal(out, torch.where(m, x, 0.0))
            assert torch.equal(out, layers.unpack(*ref[:3], (n,)))


@pytest.mark.parametrize("path", PATHS)
def test_index_pack_drops_zeros_and_writes_dense(path):
    x = _data(5000)
    idx = torch.nonzero(x.abs() >= 1.0).reshape(-1)
    idx = torch.cat([idx, torch.tensor([1, 2, 3])]).sort().values.unique()  # with some zeros
    m = torch.zeros(5000, dtype=torch.bool)
    m[idx] = True
    with _path(path):
        for drop in (False, True):
            ref = layers._compact(x, m, None, drop)
            dense = torch.full((5000,), 9.0)
            r = fused.pack(x, idx, drop, dense)
            assert torch.equal(r[0], ref[0]) and torch.equal(r[1], ref[1])
            assert torch.equal(dense, torch.where(m, x, 0.0))


@pytest.mark.parametrize("path", PATHS)
def test_candidates(path):
    x = torch.randn(300001, generator=torch.Generator().manual_seed(2))
    buf = torch.empty(300001)
    with _path(path):
        c = fused.candidates(x, 1.5, buf)
    assert torch.equal(c, x.abs()[x.abs() >= 1.5])


def test_kth_largest_by_radix_select():
    g = torch.Generator().manual_seed(4)
    for cand in (torch.rand(100000, generator=g) * 3, torch.randint(0, 40, (5000,),
                                                                     generator=g).float()):
        for k in (1, 7, cand.numel() // 3, cand.numel()):
            t, n_ge = fused.kth_largest(cand, k)
            ref = torch.kthvalue(cand, cand.numel() - k + 1).values
            assert t == float(ref) and n_ge == int((cand >= ref).sum())
    assert fused.kth_largest(torch.rand(5), 6) is None


def test_lazy_holder_same_threshold_or_falls_back():
    from sw.topk import ThresholdHolder

    x = torch.randn(8, 64, 16, 16, generator=torch.Generator().manual_seed(6))
    lazy, plain = ThresholdHolder(2), ThresholdHolder(2)
    held, _ = lazy.select(x, 0.1, lazy=True)
    _, idx = plain.select(x, 0.1)
    assert isinstance(held, Held) and torch.equal(lazy.threshold, plain.threshold)
    assert torch.equal(torch.nonzero((x.abs() >= held.threshold).reshape(-1)).reshape(-1), idx)
    assert isinstance(lazy.select(x, 0.1, lazy=True)[0], Held)  # the held call
    ties = torch.ones(40000)  # every element ties: exactly-k needs the stream-order rule
    m, idx = ThresholdHolder(1).select(ties, 0.5, lazy=True)
    assert not isinstance(m, Held) and idx.tolist() == list(range(20000))


def test_routes_that_do_not_apply():
    x = torch.randn(64)
    assert fused.pack(x.double(), Held(0.5), True) is None  # float32 only
    assert fused.pack(x.reshape(8, 8).t(), Held(0.5), True) is None  # contiguous only
    assert fused.pack(x, Held(10.0), True) is None  # nothing kept: the index format wins
    assert fused.unpack_bits(x.double(), torch.zeros(8, dtype=torch.uint8), 64,
                             torch.empty(64)) is None


@pytest.mark.parametrize("period, ties", [(1, "exact"), (2, "exact"), (1, "keep"), (3, "keep")])
def test_layer_steps_identical_with_and_without(period, ties):
    def run(aten):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            layers.SwatConv2d(3, 16, 3, padding=1, sparsity=0.9, period=period, ties=ties),
            torch.nn.ReLU(),
            layers.SwatConv2d(16, 64, 3, padding=1, sparsity=0.9, period=period, ties=ties),
            torch.nn.ReLU(), torch.nn.Flatten(),
            layers.SwatLinear(64 * 16 * 16, 10, sparsity=0.9, period=period, ties=ties))
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        for _ in range(2):
            x = torch.randn(4, 3, 16, 16, generator=g)  # 16*16*16*4 = 16384, 65536 elements
            y = torch.randint(0, 10, (4,), generator=g)
            with fused.disabled() if aten else _nothing():
                loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return net.state_dict(), [m.stats for m in net if hasattr(m, "stats")]

    (a, sa), (b, sb) = run(True), run(False)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sa == sb  # same thresholds and densities


def test_switched_off_or_without_a_compiler(tmp_path, monkeypatch):
    def reload():
        monkeypatch.setattr(fused, "_lib", None)
        monkeypatch.setattr(fused, "_why", "not loaded yet")
        return fused.status()

    monkeypatch.setenv("SWAT_FUSED", "0")
    assert reload() == "disabled by SWAT_FUSED=0"
    monkeypatch.setenv("SWAT_FUSED", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    monkeypatch.setenv("SWAT_EXT_BUILD", str(tmp_path / "build"))
    assert reload().startswith("unavailable (") and not fused.available()
    layer = layers.SwatConv2d(2, 3, 3, sparsity=0.5)  # the ATen route still works
    layer(torch.randn(1, 2, 5, 5, requires_grad=True)).sum().backward()
    assert layer.weight.grad is not None
    monkeypatch.undo()
    assert fused.status().startswith("in use")
    with fused.disabled():
        assert fused.status() == "disabled in this block" and not fused.available()
    assert fused.status().startswith("in use")
