"""Training loop, CLI validation, resume and capture_step (sw.train)."""

import json
import subprocess
import sys

import pytest
import torch

from sw import train as T
from sw.checkpoint import load_checkpoint
from sw.train.loop import check_batch


def _swat_available():
    try:
        import sw.layers  # noqa: F401
        import sw.swatify  # noqa: F401
    except ImportError:
        return False
    return True


needs_swat = pytest.mark.skipif(not _swat_available(), reason="sw.layers / sw.swatify missing")
METHOD = "swat" if _swat_available() else "dense"


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------ learning


@needs_swat
def test_digits_swat_u_90_learns():
    calls = []
    res = T.train(dataset="digits", method="swat", sparsity=0.9, epochs=3,
                  callback=lambda info: calls.append((info.step, info.loss)))
    assert res.final["test_acc"] > 0.8  # chance is 0.1
    assert len(calls) == res.steps == 3 * 23 and calls[-1][0] == res.steps
    layers = res.final["layers"]
    first, *rest = layers  # SWAT-U: first layer dense, the others at 90 %
    assert layers[first]["weight_sparsity"] == 0.0
    for name in rest:
        assert layers[name]["weight_sparsity"] == pytest.approx(0.9, abs=0.01)
        assert layers[name]["activation_sparsity"] >= 0.85
        assert layers[name]["weight_threshold"] > 0


def test_digits_dense_learns():
    res = T.train(dataset="digits", method="dense", epochs=2)
    assert res.final["test_acc"] > 0.8
    assert [r["epoch"] for r in res.history] == [1, 2]


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize("cut, extra", [
    (23, {}),  # an epoch boundary
    (10, {}),  # the middle of epoch 1
    (10, dict(recipe="paper", distribution="momentum")),  # batch_idx % P, SWAT-M every step
])
def test_resume_is_bit_identical(tmp_path, cut, extra):
    cfg = dict(dataset="digits", method=METHOD, sparsity=0.9, period=3, epochs=2,
               plots=False, seed=7, **extra)
    straight = T.train(cfg, out=str(tmp_path / "a"))
    T.train(cfg, out=str(tmp_path / "b"), max_steps=cut)
    ckpt = load_checkpoint(tmp_path / "b")
    assert ckpt["step"] == cut and ckpt["data"] == {"seed": 7, "epoch": cut // 23,
                                                    "batch": cut % 23}
    resumed = T.train(cfg, out=str(tmp_path / "b"), resume="auto")
    assert resumed.steps == straight.steps == 46
    _assert_same(_state(straight.model), _state(resumed.model))
    _assert_same(straight.optimizer.state_dict()["state"][0],
                 resumed.optimizer.state_dict()["state"][0])
    assert [r["test_acc"] for r in straight.history] == [r["test_acc"] for r in resumed.history]
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_resume_rejects_a_different_run(tmp_path):
    T.train(dataset="digits", method="dense", epochs=1, out=str(tmp_path), plots=False)
    with pytest.raises(T.ConfigError, match=r"different seed \(0 vs 1\)"):
        T.train(dataset="digits", method="dense", epochs=2, out=str(tmp_path), seed=1,
                resume="auto")


def test_outputs_metrics_plots_checkpoint(tmp_path):
    res = T.train(dataset="digits", method=METHOD, epochs=2, out=str(tmp_path))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"checkpoint.pt", "metrics.json", "metrics.csv", "accuracy.png", "loss.png"} <= names
    if METHOD == "swat":
        assert {"sparsity.png", "thresholds.png"} <= names
    hist = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2] and hist == json.loads(json.dumps(res.history))
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,step,lr,train_loss,train_acc")
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "rng", "data", "swat", "history"} <= set(ck)
    assert set(ck["rng"][0]) == {"torch", "numpy", "python"}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet19"], "unknown model 'resnet19'"),
    (["--dataset", "mnist"], "--dataset: unknown value 'mnist'"),
    (["--method", "prune"], "--method: unknown value 'prune'"),
    (["--distribution", "normal"], "--distribution: unknown value 'normal'"),
    (["--topk-dims", "nc"], "--topk-dims: unknown value 'nc'"),
    (["--sparsity", "1"], r"--sparsity must lie in \[0, 1\), got 1.0"),
    (["--sparsity", "-0.1"], r"--sparsity must lie in \[0, 1\)"),
    (["--sparsity", "nan"], "--sparsity must be finite"),
    (["--sparsity", "ninety"], "--sparsity must be a number, got 'ninety'"),
    (["--lr", "0"], r"--lr must lie in \(0, inf\]"),
    (["--lr", "inf"], "--lr must be finite"),
    (["--period", "0"], "--period must be >= 1"),
    (["--period", "1.5"], "--period must be an integer"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--batch-size", "-4"], "--batch-size must be >= 1"),
    (["--milestones", "5,2"], "--milestones must be increasing"),
    (["--recipe", "authors"], "--recipe: unknown value 'authors'; choose from project, paper"),
    (["--ties", "all"], "--ties: unknown value 'all'; choose from exact, keep"),
    (["--dropout", "1"], r"--dropout must lie in \[0, 1\), got 1.0"),
    (["--momentum", "1.2"], r"--momentum must lie in \[0, 1\)"),
    (["--model", "resnet18"], "resnet18 takes 3-channel inputs but dataset digits has 1"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"],
     "cifar10 not found in /nonexistent/cifar"),
])
def test_cli_rejects_bad_arguments(args, message, capsys, tmp_path):
    assert T.main([*args, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swat-train: error: ")
    import re

    assert re.search(message, err), err


def test_config_api_validation():
    with pytest.raises(T.ConfigError, match="unknown training option"):
        T.train({"dataset": "digits", "sparsty": 0.9})
    with pytest.raises(T.ConfigError, match="--resume without a path needs --out"):
        T.TrainConfig(resume="auto").resolved()
    c = T.TrainConfig(dataset="cifar10", model="wrn16_8").resolved()
    assert (c.epochs, c.batch_size, c.lr, c.nesterov, c.gamma, c.milestones) == \
        (200, 128, 0.1, True, 0.2, [60, 120, 160])  # paper Table 12
    c = T.TrainConfig(dataset="cifar100", model="densenet121").resolved()
    assert (c.epochs, c.batch_size, c.weight_decay, c.milestones) == (150, 64, 5e-4, [50, 100])


def test_nan_inputs_and_divergence_are_named():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values in the inputs of epoch 3 batch 4"):
        check_batch(x, torch.tensor(float("nan")), 3, 4)
    with pytest.raises(FloatingPointError, match="loss became inf at epoch 0 batch 1"):
        check_batch(torch.zeros(1), torch.tensor(float("inf")), 0, 1)


def test_lr_schedule():
    s = T.LRSchedule("step", steps_per_epoch=10, total_steps=150, milestones=[5, 10], gamma=0.1)
    assert [s(e * 10) for e in (0, 4, 5, 9, 10, 14)] == pytest.approx([1, 1, .1, .1, .01, .01])
    w = T.LRSchedule("constant", 10, 100, [], 0.1, warmup_epochs=1)
    assert w(0) == pytest.approx(0.1) and w(9) == 1.0 and w(50) == 1.0
    c = T.LRSchedule("cosine", 10, 100, [], 0.1)
    assert c(0) == 1.0 and c(50) == pytest.approx(0.5) and c(100) == pytest.approx(0.0)


def test_module_entry_point(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sw.train", "--method", "dense", "--epochs", "1",
                        "--max-steps", "5", "--no-plots", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "final: epoch 1 step 5" in r.stdout
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.csv").is_file()


# ------------------------------------------------------------------ one step's tensors


@needs_swat
def test_capture_step_returns_the_three_passes():
    from sw import models
    from sw.data import load_digits
    from sw.swatify import swatify

    torch.manual_seed(0)
    model = swatify(models.build("digits_cnn", 10), 0.9)
    ds = load_digits()
    x, y = next(ds.batches("train", 32))
    rec = T.capture_step(model, x, y)
    names = [n for n in rec if n != "__loss__"]
    assert names == ["features.0", "features.3", "features.7", "classifier"]
    for n in names:
        r = rec[n]
        assert r["grad_output"].shape == r["output"].shape
        assert r["grad_weight"].shape == r["weight"].shape
    assert rec["features.0"]["grad_input"] is None  # inputs need no gradient
    r = rec["features.3"]
    assert r["grad_input"].shape == r["input"].shape
    assert float(r["weight_mask"].float().mean()) == pytest.approx(0.1, abs=0.01)
    assert int((r["sparse_input"] != 0).sum()) <= r["input"].numel() * 0.1 + 1
    # the dense output gradient and the sparse operands reproduce the layer's weight gradient
    gw = torch.nn.grad.conv2d_weight(r["sparse_input"], r["weight"].shape, r["grad_output"],
                                     padding=1)
    assert torch.allclose(gw, r["grad_weight"], atol=1e-5)
    gi = torch.nn.grad.conv2d_input(r["input"].shape, r["sparse_weight"], r["grad_output"],
                                    padding=1)
    assert torch.allclose(gi, r["grad_input"], atol=1e-5)


@needs_swat
def test_swat_m_redistributes_density_by_momentum_every_step():
    seen = []

    def cb(info):
        seen.append({n: m.density for n, m in info.model.named_modules() if hasattr(m, "period")})

    res = T.train(dataset="digits", distribution="momentum", sparsity=0.9, max_steps=3,
                  callback=cb)
    assert len({tuple(d.values()) for d in seen}) == 3  # new densities after every step
    dens = seen[-1]
    sizes = {n: m.weight.numel() for n, m in res.model.named_modules() if n in dens}
    kept = sum(round(dens[n] * sizes[n]) for n in dens)
    target = 0.1 * sum(sizes.values())
    assert target <= kept < target + 4 * len(dens)  # the budget, rounded up per round


@needs_swat
def test_snfs_redistributes_once_per_epoch():
    res = T.train(dataset="digits", distribution="snfs", sparsity=0.9, epochs=1)
    dens = {n: r["density"] for n, r in res.final["layers"].items()}
    assert len(set(dens.values())) > 1  # no longer uniform
    sizes = {n: m.weight.numel() for n, m in res.model.named_modules() if n in dens}
    kept = sum(dens[n] * sizes[n] for n in dens)
    assert kept == pytest.approx(0.1 * sum(sizes.values()), rel=1e-6)  # budget preserved


@needs_swat
def test_paper_recipe_counts_the_period_per_epoch():
    recomputed = []

    def cb(info):
        layers = [m for m in info.model.modules() if hasattr(m, "period")]
        conv, linear = layers[1], layers[-1]
        recomputed.append((info.epoch, info.batch, conv.stats["recomputed"],
                           linear.stats["recomputed"]))

    T.train(dataset="digits", sparsity=0.9, period=10, epochs=2, recipe="paper", callback=cb)
    # 23 batches per epoch: convolutions recompute at batch_idx 0, 10, 20 of every epoch
    # (the project's counter would give steps 0, 10, 20, 30, 40: epoch 2 batches 7 and 17)
    conv = [(e, b) for e, b, c, _ in recomputed if c]
    assert conv == [(0, 0), (0, 10), (0, 20), (1, 0), (1, 10), (1, 20)]
    assert all(lin for *_, lin in recomputed)  # the linear layer recomputes every step


def test_paper_recipe_defaults_and_options():
    c = T.TrainConfig(recipe="paper").resolved()
    assert (c.ties, c.dropout, c.structured) == ("keep", 0.0, "none")
    c = T.TrainConfig(dataset="cifar10", model="wrn16_8", recipe="paper").resolved()
    assert c.dropout == 0.3  # the authors' WRN-16-8
    c = T.TrainConfig(dataset="cifar10", model="wrn16_8", structured=True).resolved()
    assert (c.ties, c.dropout, c.structured) == ("exact", 0.0, "channel")
    with pytest.raises(T.ConfigError, match="--dropout: model resnet18 has no dropout layer"):
        T.TrainConfig(dataset="cifar10", dropout=0.3).resolved()
    from sw import models

    net = models.build("wrn16_8", 10, dropout=0.3)
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.3] * 6


@needs_swat
def test_structured_filter_from_the_cli(tmp_path, capsys):
    argv = ["--structured", "filter", "--sparsity", "0.5", "--max-steps", "2", "--out",
            str(tmp_path / "run"), "--no-plots", "--no-progress", "--quiet"]
    assert T.main(argv) == 0
    ck = load_checkpoint(tmp_path / "run")
    assert ck["config"]["structured"] == "filter"
    assert T.main(["--structured", "rows", "--out", str(tmp_path / "x")]) == 2
    assert "--structured: unknown value 'rows'; choose from none, channel, filter" in \
        capsys.readouterr().err


def test_max_steps_without_epochs_runs_enough_epochs():
    res = T.train(dataset="digits", method="dense", max_steps=30, plots=False)
    assert res.steps == 30 and res.config.epochs == 2  # 23 steps per epoch
    assert [r["complete"] for r in res.history] == [True, False]


def test_cifar10_cli_run_on_a_tiny_fake_dataset(tmp_path, capsys):
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, 4).tolist()}, fh)
    argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--model", "resnet18",
            "--method", METHOD, "--batch-size", "10", "--epochs", "1", "--threads", "1",
            "--out", str(tmp_path / "run"), "--no-progress", "--no-plots", "--quiet"]
    assert T.main(argv) == 0
    assert "final: epoch 1 step 2" in capsys.readouterr().out  # 20 images / batch 10
    ck = load_checkpoint(tmp_path / "run")
    assert ck["config"]["milestones"] == [1] and ck["config"]["lr"] == 0.1


@needs_swat
def test_capture_step_streams_the_same_tensors_layer_by_layer():
    """``on_layer``: every layer handed over once, in backward order, with the tensors the
    kept records hold (input, weight, output and input gradients), and nothing kept."""
    from sw import models
    from sw.data import load_digits
    from sw.swatify import swatify

    ds = load_digits()
    x, y = next(ds.batches("train", 16))

    def step(**kw):
        torch.manual_seed(0)
        return T.capture_step(swatify(models.build("digits_cnn", 10), 0.9), x, y, **kw)

    kept = step()
    got = []
    out = step(on_layer=lambda name, rec: got.append(
        (name, {k: (None if v is None else v.clone()) for k, v in rec.items()})))
    assert list(out) == ["__loss__"]
    assert torch.equal(out["__loss__"]["loss"], kept["__loss__"]["loss"])
    assert [n for n, _ in got] == ["classifier", "features.7", "features.3", "features.0"]
    for name, rec in got:
        for key in ("input", "weight", "grad_output", "grad_input"):
            want = kept[name][key]
            assert (rec[key] is None) == (want is None), (name, key)
            assert want is None or torch.equal(rec[key], want), (name, key)
