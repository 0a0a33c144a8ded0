"""sim.select_plan: the GIVEN command of every S block reproduces the host's blob exactly.

The unit's keep rule is emulated here (``sw.int_topk`` semantics: first ``ties`` ties in the
block's stream order, or the cut in transposed mode) on the pair the host's Top-K uses; the
RTL itself runs the same commands in tests/test_select_loop.py.
"""

import numpy as np
import pytest
import torch

from hw.contract.blob import encode_words
from hw.contract.tiling import limits, plan_for
from sim import select_plan as sp
from sw import int_topk, lowering


def _emulate(block, given, transpose, index=None):
    t, ties, cut_row, cut_col, cut_any, cut_index = given
    mag = np.abs(block.astype(np.int16))
    if index is not None:  # by_index: a tie is kept iff its source index <= cut_index
        keep = (mag > t) | ((mag == t) & bool(cut_any) & (index <= cut_index))
    elif transpose:
        r, c = np.indices(block.shape)
        tie = (mag == t) & bool(cut_any) & ((r < cut_col) | ((r == cut_col) & (c <= cut_row)))
        keep = (mag > t) | tie
    else:
        keep = int_topk.select_mask_threshold(block.T, t, min(ties, block.size)).T
    return encode_words(np.where(keep, block, 0).astype(np.int8))


def _jobs(conv, seed, levels):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if conv:
        mod = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
        a = rng.integers(-levels, levels + 1, (4, 3, 6, 6)).astype(np.float64)
        dy = rng.normal(size=(4, 5, 6, 6))
    else:
        mod = torch.nn.Linear(40, 12, bias=False)
        a = rng.integers(-levels, levels + 1, (6, 40)).astype(np.float64)
        dy = rng.normal(size=(6, 12))
    w = rng.integers(-levels, levels + 1, tuple(mod.weight.shape)).astype(np.float64)
    ops = lowering.quantize_layer("l", mod, a, w, dy, density=0.3)
    return [lowering.forward_job(ops), lowering.backward_input_job(ops),
            lowering.backward_weight_job(ops)]


@pytest.mark.parametrize("indexed", [False, True], ids=["no-index", "by-index"])
@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_block_commands_reproduce_the_host_blobs(conv, seed, indexed):
    # few magnitude levels: the Top-K threshold splits a large tie class
    lim = limits(rows=8, cols=8, d_depth=64, s_depth=48, c_depth=64)  # forces K/N blocks
    host = exact = 0
    for job in _jobs(conv, seed, levels=3):
        sel = sp.selection_of(job)
        assert sp.supported(job, sel) is None
        t, ties = int_topk.threshold_int(sel.src, sel.k)
        cut = sp.tie_cut(sel.src, t, ties)
        for _mb, kb, nb in plan_for(job.shape[0], job.s, lim):
            cmd = sp.block_command(sel, job.s, kb, nb, t, ties, cut, indexed=indexed)
            want = encode_words(job.s[kb, nb])
            got = _emulate(job.s_dense[kb, nb], cmd.given, cmd.transpose, cmd.index)
            if cmd.host is not None:
                host += 1
                continue
            exact += 1
            assert np.array_equal(got, want), (job.label, kb, nb, cmd)
    assert exact > 0
    if not conv or indexed:
        assert host == 0


def test_split_ties_are_exercised():
    job = _jobs(False, 0, levels=3)[0]
    sel = sp.selection_of(job)
    t, ties = int_topk.threshold_int(sel.src, sel.k)
    cut = sp.tie_cut(sel.src, t, ties)
    assert cut not in (None, -1)  # a real split: the budget/cut logic is tested above


def test_no_topk_keeps_every_nonzero():
    job = _jobs(False, 1, levels=3)[0]
    job.s = job.s_dense
    sel = sp.selection_of(job)
    assert sel.kind == "all"
    cmd = sp.block_command(sel, job.s, slice(0, job.s.shape[0]), slice(0, job.s.shape[1]),
                           0, 0, None)
    assert np.array_equal(_emulate(job.s_dense, cmd.given, cmd.transpose), encode_words(job.s))


def test_per_group_selection_is_not_the_units():
    job = _jobs(False, 2, levels=50)[0]
    qw = job.s_dense.T
    job.s = lowering.int_topk(qw, 0.3, groups=qw.shape[0]).T  # per filter ("chw")
    assert "per-tensor" in sp.supported(job, sp.selection_of(job))


def test_threshold_view_streams_the_reference_order():
    src = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    view = sp.threshold_view(src)
    assert np.array_equal(view.T.ravel(), src.ravel())
    assert view.shape == (60, 2)
