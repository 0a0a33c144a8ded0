"""sim.select_sampled: the select of sampled GEMMs on the RTL unit, the rest extrapolated.

On a small conv + linear step planned with tiny buffers (so every GEMM is sampled): every blob
the unit makes equals the host's Top-K word for word (the conv's im2col'd ``A`` with a split
tie class through per-block source indices), the RTL pass 1 gives the host's ``(t, ties,
cut)``, the formula equals the RTL on every simulated blob given its kept matrix, and the
extrapolated select cycles are the ratio estimator of the formula calibrated on the sample.
"""

import numpy as np
import pytest
import torch

from hw.contract.codes import SelectMode
from hw.contract.cycles import select_cycles
from hw.contract.tiling import limits
from sim import select_plan as sp
from sim import select_sampled, verilate
from sim.compare_jobs import plan_gemm
from sw import int_topk, lowering


@pytest.fixture(scope="module")
def model():
    return verilate.harness_model(8, 8)


def _planned(seed=0, levels=4, density=0.3, n_max=2):
    # a strided, padded convolution over 5 batch items: the per-block source indices of its
    # im2col'd A cross items and padding
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False)
    fc = torch.nn.Linear(6 * 16, 5, bias=False)
    a0 = rng.integers(-levels, levels + 1, (5, 3, 8, 8)).astype(np.float64)
    a1 = np.maximum(rng.integers(-levels, levels + 1, (5, 6 * 16)), 0).astype(np.float64)
    lim = limits(rows=8, cols=8, d_depth=96, s_depth=80, c_depth=64)
    out = []
    for name, mod, a, dy in (("c", conv, a0, rng.normal(size=(5, 6, 4, 4))),
                             ("f", fc, a1, rng.normal(size=(5, 5)))):
        w = rng.integers(-levels, levels + 1, tuple(mod.weight.shape)).astype(np.float64)
        ops = lowering.quantize_layer(name, mod, a, w, dy, density=density)
        for j in (lowering.forward_job(ops), lowering.backward_input_job(ops),
                  lowering.backward_weight_job(ops)):
            keep = {"s": j.s.copy(), "src": None if j.select_src is None
                    else j.select_src.copy()}
            out.append((plan_gemm(j, lim, n_max, seed, truly_dense=False), keep))
    return out


def test_sampled_blobs_from_the_rtl_unit(model, monkeypatch):
    monkeypatch.setattr(select_sampled, "A_PASS1_FRACTION", 1.0)  # every A's pass 1 on RTL
    monkeypatch.setattr(select_sampled, "A_BLOBS", 2)  # a sample of the A blocks' blobs
    planned = _planned()
    plans = {i: p.select for i, (p, _k) in enumerate(planned) if p.select is not None}
    assert len(plans) == len(planned)  # tiny buffers: every GEMM is sampled
    conv_a = plans[2]
    assert conv_a.sel.kind == "im2col" and conv_a.host is None
    t, ties, cut = conv_a.pair
    assert 0 < ties < int((np.abs(planned[2][1]["src"].astype(int)) == t).sum())  # split ties
    assert len(conv_a.picked) == 2 < len(conv_a.blocks)  # only the sampled blocks' blobs
    want_blobs = {i: p.blocks for i, p in plans.items()}
    sparse = {i: {b: p.sparse[b].copy() for b in p.picked} for i, p in plans.items()}
    res = select_sampled.run(plans, model)
    assert res.mismatches == []
    assert res.checks["pass1_rtl"] == 4  # c:W, c:A, f:W, f:A
    assert res.checks["pass1_worst_error"] == 0.0
    assert res.checks["blob_exact_worst_error"] == 0.0 and res.checks["blobs_exact_checked"] >= 2
    lanes, banks = 32, 8
    for i, rec in res.jobs.items():
        p = plans[i]
        assert rec["blobs"] == len(want_blobs[i])
        assert rec["blobs_rtl"] == len(p.picked)  # every RTL blob equal to the host's
        p1 = rec["pass1"][0] if rec["pass1"] else 0
        # the simulated blobs: their cycles are the formula's given the kept matrix
        for b in p.picked:
            host = sparse[i][b]
            assert rec["blob_cycles"][b] == select_cycles(
                *host.shape, lanes, mode=SelectMode.GIVEN, kept=host, banks=banks)
        est = [sp.given_cycles(kb.stop - kb.start, nb.stop - nb.start, nz, lanes, banks)
               for (kb, nb), nz in zip(p.blocks, p.nnz, strict=True)]
        y = [rec["blob_cycles"][b] for b in p.picked]
        x = [est[b] for b in p.picked]
        if len(p.picked) == len(p.blocks):  # W: all on the RTL, nothing extrapolated
            assert rec["select_cycles"] == sum(y) + p1 == rec["rtl_cycles"]
            assert rec["bound95"] == 0.0
        else:  # A: the ratio estimator of the formula calibrated on the RTL sample
            assert rec["select_cycles"] == round(sum(y) / sum(x) * sum(est)) + p1
            assert rec["rtl_cycles"] == sum(y) + p1
    # the pass 1 counted once per tensor, on its first GEMM (W: forward)
    assert res.jobs[0]["pass1"][1] == "rtl" and res.jobs[1]["pass1"] is None
    k = int_topk.k_from_density(0.3, planned[2][1]["src"].size)
    assert conv_a.pair[:2] == tuple(int(v) for v in int_topk.threshold_int(
        planned[2][1]["src"], k))


def test_a_blob_sample_is_drawn_apart_from_the_gemm_sample(model, monkeypatch):
    # one sampled core operation per GEMM, three A blobs on the RTL: the blob sample does not
    # shrink with the GEMM's, and is a sample of the S blocks (not of the operations)
    monkeypatch.setattr(select_sampled, "A_BLOBS", 3)
    planned = _planned(seed=2, n_max=1)
    conv_a = planned[2][0].select
    assert planned[2][0].kinds["sparse"].sample.picked.size == 1
    assert len(conv_a.picked) == 3 < len(conv_a.blocks)
    assert conv_a.picked == sorted(set(conv_a.picked))
    again = _planned(seed=2, n_max=1)[2][0].select  # the seed decides it
    assert again.picked == conv_a.picked
    res = select_sampled.run({2: conv_a}, model)
    assert res.mismatches == [] and res.jobs[2]["blobs_rtl"] == 3
    assert res.jobs[2]["simulated"].endswith(f"3 of {len(conv_a.blocks)} blobs RTL, rest "
                                             "extrapolated")


def test_every_a_blob_gathered_from_the_tensor(model, monkeypatch):
    # A_BLOBS = 0 (the default): every S block of the im2col'd A on the RTL, its dense and
    # host blocks gathered from A when the unit needs them (not kept), each host block the
    # lowering's (CRC-32), nothing extrapolated
    monkeypatch.setattr(select_sampled, "A_BLOBS", 0)
    planned = _planned()
    conv_a, kept = planned[2][0].select, planned[2][1]
    t, ties, _cut = conv_a.pair  # a split tie class: blobs by_index, with the gathered positions
    assert 0 < ties < int((np.abs(kept["src"].astype(int)) == t).sum())
    assert conv_a.picked == list(range(len(conv_a.blocks))) and len(conv_a.blocks) > 2
    assert conv_a.dense == {} and conv_a.sparse == {} and conv_a.sel.src is not None
    assert len(conv_a.digests) == len(conv_a.blocks)
    res = select_sampled.run({2: conv_a}, model)
    rec = res.jobs[2]
    assert res.mismatches == [] and rec["blobs_rtl"] == rec["blobs"] == len(conv_a.blocks)
    assert rec["select_cycles"] == rec["rtl_cycles"] and rec["bound95"] == 0.0
    assert rec["simulated"] == f"pass 1 rtl; all {len(conv_a.blocks)} blobs RTL"
    for b, (kb, nb) in enumerate(conv_a.blocks):  # the formula given the kept matrix
        host = kept["s"][kb, nb]
        assert rec["blob_cycles"][b] == select_cycles(*host.shape, 32, mode=SelectMode.GIVEN,
                                                      kept=host, banks=8)
    assert conv_a.sel.src is None  # dropped once its blocks are made
    # a block that is not the lowering's is reported
    bad = _planned()[2][0].select
    bad.digests[1] ^= 1
    res = select_sampled.run({2: bad}, model)
    assert len(res.mismatches) == 1 and "is not the lowering's S block" in res.mismatches[0]


def test_select_spread_over_processes_gives_the_same_figures(model, monkeypatch):
    # the layers' select work in two simulator processes: every record, check and mismatch
    # list as in one
    monkeypatch.setattr(select_sampled, "A_BLOBS", 0)
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    def plans():
        return {i: p.select for i, (p, _k) in enumerate(_planned()) if p.select is not None}

    one = select_sampled.run(plans(), model, processes=1)
    two = select_sampled.run(plans(), model, processes=2)
    assert len(one.processes) == 1 and len(two.processes) == 2
    parts = select_sampled._spread(plans(), 2, 32)  # whole layers: c's plans in one, f's in other
    assert sorted({p.layer for p in part.values()} == {"c"} or
                  {p.layer for p in part.values()} == {"f"} for part in parts) == [True, True]
    assert two.jobs == one.jobs and two.checks == one.checks and two.mismatches == [] == \
        one.mismatches
    assert two.ticks == sum(p["cycles"] for p in two.processes)


def test_a_pass_1_not_sampled_takes_the_formula(model, monkeypatch):
    monkeypatch.setattr(select_sampled, "A_PASS1_FRACTION", 0.0)
    monkeypatch.setattr(select_sampled, "A_BLOBS", 2)  # a sample: the whole A is not kept
    planned = _planned(seed=1)
    plans = {i: p.select for i, (p, _k) in enumerate(planned) if p.select is not None}
    assert plans[2].sel.src is None  # the whole A is not kept
    res = select_sampled.run({2: plans[2]}, model)
    assert res.mismatches == [] and res.jobs[2]["blobs_rtl"] == len(plans[2].picked)
    p1, how = res.jobs[2]["pass1"]
    assert how == "formula"
    assert p1 == select_cycles(*plans[2].view_shape, 32, mode=SelectMode.THRESHOLD,
                               by_index=True)


def test_exposed_model_replays_the_loops_schedule():
    # one GEMM, two blocks: the first blob waits (nothing before it), the second hides
    # behind the first block unless longer
    assert select_sampled.exposed_model([([(100, 30), (50, 40)], None)]) == (30, [30])
    assert select_sampled.exposed_model([([(100, 30), (50, 140)], None)]) == (70, [70])
    g = ([(100, 10)], None)
    # a pass 1 needed two blocks on starts in this window, behind the next blob; the blob
    # after it needs its pair in its command, issued before the next GEMM starts
    assert select_sampled.exposed_model([g, g, ([(100, 10)], ("x:W", 80, -1))]) == \
        (10, [10, 0, 0])
    assert select_sampled.exposed_model([g, g, ([(100, 10)], ("x:W", 200, -1))]) == \
        (120, [10, 0, 110])  # starts at 20 behind the blob, GEMM 0 ends at 110
    # needed by the very next block and not begun: waited for whole
    assert select_sampled.exposed_model([g, ([(100, 10)], ("x:W", 80, -1))]) == (90, [10, 80])
    # an activation's pass 1 only once the GEMM that makes it has run
    assert select_sampled.exposed_model([g, g, g, ([(100, 10)], ("x:A", 80, 1))]) == \
        (90, [10, 0, 0, 80])
    assert select_sampled.exposed_model([g, g, g, ([(100, 10)], ("x:A", 80, 0))]) == \
        (10, [10, 0, 0, 0])
    # one longer than the slack of two windows waits until it is needed two blocks on
    assert select_sampled.exposed_model(
        [g, g, g, g, ([(100, 10)], ("x:W", 250, -1))]) == (170, [10, 0, 0, 0, 160])


def test_exposed_model_equals_the_core_counter_on_a_step_run_whole(model):
    """The model replays the loop: fed the loop's own per-block GEMM, blob and pass-1 cycles
    (``StepSelect.blocks``, ``thresholds``) it gives the core's ``sel.exposed_cycles`` of the
    step, GEMM by GEMM (to a few cycles)."""
    from sim import select_loop

    rng = np.random.default_rng(3)
    convs = [torch.nn.Conv2d(c, f, 3, padding=1, bias=False) for c, f in ((3, 8), (8, 8))]
    jobs, a = [], rng.integers(-4, 5, (4, 3, 8, 8)).astype(np.float64)
    for n, conv in enumerate(convs):
        w = rng.integers(-4, 5, tuple(conv.weight.shape)).astype(np.float64)
        ops = lowering.quantize_layer(f"c{n}", conv, a, w, rng.normal(size=(4, 8, 8, 8)),
                                      density=0.3)
        jobs += [lowering.forward_job(ops), lowering.backward_input_job(ops),
                 lowering.backward_weight_job(ops)]
        a = np.maximum(rng.integers(-4, 5, (4, 8, 8, 8)), 0).astype(np.float64)
    lim = limits(rows=8, cols=8, d_depth=96, s_depth=80, c_depth=64)
    res = select_loop.run_step(jobs, model=model, limits=lim, check_c=False)
    assert res.mismatches == [] and res.exposed_cycles > 0
    for i, rec in enumerate(res.jobs):  # the recorded blocks are the loop's runs, in plan order
        assert len(res.blocks[i]) == len(select_loop._blocks(jobs[i], lim)) == rec["blobs"]
        assert sum(b[0] for b in res.blocks[i]) == rec["cycles"]
    assert res.keys == {i: sp.selection_of(j).key for i, j in enumerate(jobs)}
    pass1 = {k: v["cycles"] for k, v in res.thresholds.items()}
    total, share, order = select_sampled.replay(jobs, [res.blocks[i] for i in range(len(jobs))],
                                                [res.keys[i] for i in range(len(jobs))], pass1,
                                                order=res.order)
    assert order == res.order
    # equal to the few cycles a wait before a GEMM costs in the core's start handshake (the
    # unit already writes the next blob): 382 vs 391 here; digits 1,677 = 1,677, ResNet-18
    # batch 2 152,171 vs 152,255
    assert abs(total - res.exposed_cycles) <= 0.03 * res.exposed_cycles
    assert all(abs(share[i] - res.jobs[i]["exposed_cycles"]) <= 10 for i in res.order), \
        (share, [r["exposed_cycles"] for r in res.jobs])
    # on the loop's estimates its own order rule (step_order) is the loop's order
    assert select_sampled.replay(jobs, [res.blocks[i] for i in range(len(jobs))],
                                 [res.keys[i] for i in range(len(jobs))], pass1)[2] == res.order
