"""sim.compare: lowering of a training step to the three GEMMs, and the job end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _digits_step(sparsity=0.9, batch=8):
    from sw import models, swatify
    from sw.train import capture_step

    torch.manual_seed(0)
    model = swatify(models.build("digits_cnn"), sparsity)
    x = torch.randn(batch, 1, 8, 8)
    y = torch.randint(0, 10, (batch,))
    return model, capture_step(model, x, y)


def test_lowering_matches_the_golden_model():
    """Integer GEMMs of every layer and pass, dequantized, reproduce the float tensors of the
    golden model's step (Y, dA, dW) to quantization accuracy; shapes follow CONTRACT.md."""
    from sim import compare
    from sw import int_topk, intref

    model, recs = _digits_step()
    dens = compare._densities(model)
    mods = dict(model.named_modules())
    seen = set()
    errs = []
    for name, rec in recs.items():
        if name not in mods:
            continue
        density, dims = dens.get(name, (1.0, "nchw"))
        jobs = compare.layer_jobs(name, mods[name], rec, density, dims)
        for j in jobs:
            seen.add(j["pass"])
            c = intref.gemm(j["d"], j["s"])
            err = compare._rel_err(j, c)
            assert err < 0.4, (name, j["pass"], err)  # a lowering mistake gives ~1
            # with the golden model's own masks only quantization error remains
            err_q = compare._rel_err(j, intref.gemm(j["d"], j["s_golden"]))
            errs.append(err_q)
            assert err_q < 0.1, (name, j["pass"], err_q)
            m, k, n = j["shape"]
            assert j["d"].shape == (m, k) and j["s"].shape == (k, n)
            if density < 1 and j["pass"] == "forward":
                # the kept set is the integer Top-K with the hardware's tie rule
                w = j["s"].T
                assert int((w != 0).sum()) <= int_topk.k_from_density(density, w.size)
        names = [j["pass"] for j in jobs]
        assert names[0] == "forward" and names[-1] == "backward_weight"
    assert seen == {"forward", "backward_input", "backward_weight"}
    assert float(np.median(errs)) < 0.05, errs


@pytest.mark.slow
def test_compare_job_writes_results(tmp_path):
    from sim import compare

    out = tmp_path / "res"
    assert compare.main(["--steps", "20", "--out", str(out), "--no-sweep", "--quiet"]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["summary"]["totals"]["all_bit_exact"] is True
    layers = data["layers"]
    assert {r["pass"] for r in layers} == {"forward", "backward_input", "backward_weight"}
    for r in layers:
        assert r["rtl_cycles"] >= r["ideal_cycles"] > 0 or r["effectual_macs"] == 0
        assert r["rel_err_vs_float"] < 0.6  # a lowering mistake gives ~1
        assert r["rel_err_quant_only"] < 0.6
    for f in ("compare.csv", "compare.md", "rtl_vs_flops.png"):
        assert (out / f).stat().st_size > 0
    assert np.isfinite(data["summary"]["totals"]["speedup"])
