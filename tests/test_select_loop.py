"""sim.select_loop: a small two-layer step with every blob made by the RTL select unit.

Blobs equal the host's word for word (conv A with a split tie class through the index side band),
the GEMMs read them bit-exactly, the exposed cycles are the core's counter and add up per job.
"""

import numpy as np
import pytest
import torch

from hw.contract.tiling import limits
from sim import select_loop, verilate
from sim.harness import CoreSim
from sw import int_topk, lowering


@pytest.fixture(scope="module")
def core():
    with CoreSim(verilate.harness_model(8, 8)) as c:
        yield c


def _step(seed, levels, density=0.3):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    fc = torch.nn.Linear(8 * 36, 10, bias=False)
    a0 = rng.integers(-levels, levels + 1, (4, 3, 6, 6)).astype(np.float64)
    a1 = np.maximum(rng.integers(-levels, levels + 1, (4, 8 * 36)), 0).astype(np.float64)
    jobs = []
    for name, mod, a, dy in (("c", conv, a0, rng.normal(size=(4, 8, 6, 6))),
                             ("f", fc, a1, rng.normal(size=(4, 10)))):
        w = rng.integers(-levels, levels + 1, tuple(mod.weight.shape)).astype(np.float64)
        ops = lowering.quantize_layer(name, mod, a, w, dy, density=density)
        jobs += [lowering.forward_job(ops), lowering.backward_input_job(ops),
                 lowering.backward_weight_job(ops)]
    return jobs


@pytest.mark.parametrize("small", [False, True], ids=["whole", "blocked"])
def test_step_blobs_from_the_rtl_unit(core, small):
    jobs = _step(0, levels=4)
    lim = limits(rows=8, cols=8, d_depth=96, s_depth=80, c_depth=64) if small else None
    res = select_loop.run_step(jobs, sim=core, limits=lim)
    assert res.mismatches == []
    assert all(r["bit_exact"] for r in res.jobs)
    assert res.blobs == res.blobs_rtl + res.blobs_host
    labels = {j.label: r for j, r in zip(jobs, res.jobs, strict=True)}
    # W (forward), W^T (input gradient), linear A and conv A (a split tie class in the im2col
    # stream: kept by the source-index side band): every blob from the unit
    for lab in labels:
        assert labels[lab]["blobs_host"] == 0 and labels[lab]["blobs_rtl"] >= 1, lab
    t, ties = res.thresholds["c:A"]["threshold"], res.thresholds["c:A"]["ties"]
    assert 0 < ties < int((np.abs(jobs[2].select_src.astype(int)) == t).sum())
    assert res.exposed_cycles == sum(r["exposed_cycles"] for r in res.jobs) > 0
    assert set(res.thresholds) == {"c:W", "f:W", "f:A", "c:A"}
    if small:
        assert res.blobs > len(jobs)  # blocks of K/N were selected one by one


def test_conv_activation_blob_exact_when_the_tie_split_is_trivial(core):
    for seed in range(40):  # wide value range: few ties, often all or none kept
        jobs = _step(seed, levels=127, density=0.25)
        wg = jobs[2]
        src = wg.select_src
        t, ties = int_topk.threshold_int(src, int_topk.k_from_density(0.25, src.size))
        if ties in (0, int((np.abs(src.astype(int)) == t).sum())):
            break
    else:
        pytest.fail("no trivial tie split in 40 seeds")
    res = select_loop.run_step([wg], sim=core)
    assert res.mismatches == [] and res.jobs[0]["bit_exact"]
    assert res.jobs[0]["blobs_rtl"] == res.jobs[0]["blobs"] == 1


def test_backward_order_hides_blobs():
    # input gradients in chain order; a weight gradient only after its dY exists
    jobs = _step(1, levels=4)
    est = {i: 1 for i in range(len(jobs))}
    order = select_loop.step_order(jobs, est, est)
    names = [jobs[i].label for i in order]
    assert names[:2] == ["c:forward", "f:forward"]
    assert names.index("f:backward_input") < names.index("c:backward_input")
    assert names.index("f:backward_input") < names.index("c:backward_weight")
    assert sorted(order) == list(range(len(jobs)))


def _labels_est(jobs, values):
    idx = {j.label: i for i, j in enumerate(jobs)}
    return {idx[k]: v for k, v in values.items()}


def test_backward_order_looks_past_the_greedy_choice():
    # greedy: f:backward_input, then the longest last block (c:backward_input), which leaves c's
    # weight-gradient blob (900) behind f's short weight gradient (200): 700 exposed; looking
    # ahead, every blob fits behind the GEMM before it
    jobs = _step(1, levels=4)
    first = _labels_est(jobs, {"c:forward": 10, "f:forward": 10, "f:backward_input": 50,
                               "c:backward_input": 100, "f:backward_weight": 50,
                               "c:backward_weight": 900})
    last = _labels_est(jobs, {"c:forward": 5000, "f:forward": 100, "f:backward_input": 1000,
                              "c:backward_input": 300, "f:backward_weight": 200,
                              "c:backward_weight": 250})
    order = select_loop.step_order(jobs, first, last)
    assert sorted(order) == list(range(len(jobs)))
    assert all(first[b] <= last[a] for a, b in zip(order, order[1:], strict=False))  # all hidden


def test_backward_order_leaves_slack_for_the_last_layers_pass_1():
    # f's activations exist only after f:forward (100 cycles): their pass 1 (400) must not
    # come right behind it; after f:backward_input it hides
    jobs = _step(1, levels=4)
    first = _labels_est(jobs, {"c:forward": 10, "f:forward": 10, "f:backward_input": 50,
                               "c:backward_input": 50, "f:backward_weight": 50,
                               "c:backward_weight": 50})
    last = _labels_est(jobs, {"c:forward": 5000, "f:forward": 100, "f:backward_input": 1000,
                              "c:backward_input": 1000, "f:backward_weight": 5000,
                              "c:backward_weight": 1000})
    greedy = [jobs[i].label for i in select_loop.step_order(jobs, first, last)]
    assert greedy[2] == "f:backward_weight"
    pass1 = _labels_est(jobs, {"f:backward_weight": 400})
    names = [jobs[i].label for i in select_loop.step_order(jobs, first, last, pass1)]
    assert names[2] == "f:backward_input" and names.index("f:backward_weight") > 2


def test_an_empty_step_has_an_empty_order():
    # a large model's job samples every GEMM: nothing runs whole through the select loop
    assert select_loop.step_order([], {}, {}) == []


def test_a_select_error_is_one_line_in_the_compare_job(monkeypatch, capsys):
    from sim import compare_select
    from sim.harness import SelectFailed

    def boom(*a, **kw):
        raise SelectFailed("threshold-select unit (f:A pass 1): error 5 OVERFLOW after 99 cycles")

    monkeypatch.setattr(select_loop, "run_step", boom)
    with pytest.raises(SystemExit) as e:
        compare_select.run([], [], None)
    assert str(e.value) == ("compare: threshold-select unit (f:A pass 1): error 5 OVERFLOW "
                            "after 99 cycles")


def test_a_pass_1_runs_on_across_a_gemm_boundary(core, monkeypatch):
    """A pass 1 writes no S buffer: the host waits only up to the next block's blob, the pass 1
    queued behind it runs on while the next GEMM starts on its bank, and every blob, pair and
    GEMM stays exact."""
    jobs = _step(0, levels=4)
    lim = limits(rows=8, cols=8, d_depth=96, s_depth=80, c_depth=64)
    ran_on = []
    wait_blob = select_loop._Runner._wait_blob

    def spy(self, t):
        wait_blob(self, t)
        ran_on.extend(item[1] for item in self.pending if item[0] == "thr")

    monkeypatch.setattr(select_loop._Runner, "_wait_blob", spy)
    res = select_loop.run_step(jobs, sim=core, limits=lim)
    assert ran_on, "no pass 1 was left running at a block boundary"
    assert res.mismatches == []
    assert all(r["bit_exact"] for r in res.jobs)
    assert res.blobs == res.blobs_rtl
    assert set(res.thresholds) == {"c:W", "f:W", "f:A", "c:A"}
