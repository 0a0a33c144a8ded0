"""sim.compare_args: every bad argument of the compare job is one line and exit 2, up front."""

from __future__ import annotations

import importlib
import os

import pytest

from sim import compare, compare_args


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as ei:
        compare.main(argv)
    assert ei.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    return err.rstrip("\n")


@pytest.mark.parametrize("argv,message", [
    (["--array", "0x8"], "argument --array: rows and columns must lie in [1, 64], got 0x8"),
    (["--array", "8x0"], "argument --array: rows and columns must lie in [1, 64], got 8x0"),
    (["--array", "8"], "argument --array: expected RxC such as 8x8, got '8'"),
    (["--array", "65x8"], "argument --array: rows and columns must lie in [1, 64], got 65x8"),
    (["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    (["--steps", "-5"], "argument --steps: must be an integer >= 1, got -5"),
    (["--steps", "2.5"], "argument --steps: must be an integer, got '2.5'"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295], got -1"),
    (["--seed", "4294967296"],
     "argument --seed: must be an integer in [0, 4294967295], got 4294967296"),
    (["--sparsity", "1"], "argument --sparsity: each sparsity must lie in [0, 1), got 1"),
    (["--sparsity", "nan"], "argument --sparsity: each sparsity must lie in [0, 1), got nan"),
    (["--sparsity", "0.8,x"],
     "argument --sparsity: expected sparsities such as 0.9 or 0.8,0.9, got '0.8,x'"),
    (["--sparsity", "0.9,0.9"], "argument --sparsity: sparsity 0.9 given twice"),
    (["--workers", "-1"], "argument --workers: must be an integer >= 0, got -1"),
    (["--scheduler", "localhost"],
     "argument --scheduler: expected an address such as tcp://HOST:PORT, got 'localhost'"),
    (["--model", "vgg99"], "argument --model: invalid choice: 'vgg99' (choose from 'digits', "
                           "'resnet18', 'vgg16_bn', 'densenet121', 'wrn16_8', 'resnet50', "
                           "'digits_cnn')"),
    (["--model", "resnet50", "--distribution", "momentum"], "argument --distribution: "
     "momentum needs a training run; ResNet-50 is not trained here (use uniform or erk)"),
    (["--batch", "0"], "argument --batch: must be an integer >= 1, got 0"),
    (["--period", "0"], "argument --period: must be an integer >= 1, got 0"),
    (["--method", "meprop"], "argument --method: invalid choice: 'meprop' (choose from 'swat', "
                             "'saw', 'dense')"),
    (["--structured", "rows"], "argument --structured: invalid choice: 'rows' (choose from "
                               "'none', 'channel', 'filter')"),
    (["--sample-ops", "-1"], "argument --sample-ops: must be an integer >= 0, got -1"),
    (["--whole-ops", "x"], "argument --whole-ops: must be an integer, got 'x'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_argument_is_one_line(argv, message, capsys, tmp_path):
    assert _error(argv + ["--out", str(tmp_path / "res")], capsys) == \
        f"swat-compare: error: {message}"
    assert not (tmp_path / "res").exists()  # nothing was created for a bad command


@pytest.mark.parametrize("text,shape", [
    ("8x8", (8, 8)), (" 4X16 ", (4, 16)), ("2×3", (2, 3)), ("1x64", (1, 64)), ("64 x 64", (64, 64)),
])
def test_array(text, shape):
    assert compare_args.array(text) == shape


@pytest.mark.parametrize("tool", ["sim.verilate", "sim.sweep", "sim.gemm", "sim.fuzz"])
def test_sim_tools_take_the_same_array(tool, capsys):
    """Every sim tool's ``--array`` is :func:`sim.compare_args.array` (refused before any
    build)."""
    with pytest.raises(SystemExit) as ei:
        importlib.import_module(tool).main(["--array", "0x8"])
    assert ei.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: argument --array: rows and columns must lie in [1, 64], got 0x8\n")


def test_out_that_cannot_be_written(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert _error(["--out", str(f)], capsys) == \
        f"swat-compare: error: argument --out: {f} is a file, not a folder"
    assert _error(["--out", str(f / "sub")], capsys) == \
        f"swat-compare: error: argument --out: {f / 'sub'} lies under the file {f}, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert _error(["--out", str(ro / "res")], capsys) == \
            f"swat-compare: error: argument --out: {ro / 'res'} cannot be written: " \
            "Permission denied"
    finally:
        ro.chmod(0o700)
