"""DistributedDataParallel training on CPU (gloo): 2 local processes end with identical
weights, and the global batch is split over the ranks."""

import pytest
import torch

from sw import train as T


def _swat_available():
    try:
        import sw.swatify  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_two_process_ddp_ranks_end_identical():
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    method = "swat" if _swat_available() else "dense"
    cfg = dict(dataset="digits", method=method, sparsity=0.9, epochs=1, batch_size=64, seed=3,
               plots=False)
    r0, r1 = T.spawn(cfg, nprocs=2)
    assert r0["model"].keys() == r1["model"].keys()
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
    h0, h1 = r0["history"], r1["history"]
    assert [r["step"] for r in h0] == [23]  # ceil(ceil(1437 / 2 ranks) / 32) steps per epoch
    # metrics are all-reduced, so both ranks report the same (global) figures
    assert [r["test_acc"] for r in h0] == [r["test_acc"] for r in h1]
    assert h0[-1]["test_acc"] > 0.5
