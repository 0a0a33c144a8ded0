"""The ``swat-train`` command line: flags -> :class:`TrainConfig` -> :func:`train`.

Every flag is parsed as text and validated by ``TrainConfig.resolved`` so that bad input ends in
one line naming the option (exit 2), never a traceback. To add an option: a field in
:class:`sw.train.config.TrainConfig` (validated in ``resolved``), a flag in :func:`build_parser`
and its mapping in :func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, TrainConfig

__all__ = ["build_parser", "config_from_args", "main"]


def _bool_flag(p: argparse.ArgumentParser, name: str, help: str) -> None:
    p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swat-train",
        description="Train a CNN with Sparse Weight Activation Training (SWAT). Defaults: "
                    "digits (bundled with scikit-learn), digits CNN, SWAT-U at 90%% sparsity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default="digits", help="digits | cifar10 | cifar100")
    p.add_argument("--data-dir", default=None,
                   help="folder with the CIFAR python-pickle files (default $SWAT_DATA or ./data)")
    p.add_argument("--model", default=None,
                   help="digits_cnn | resnet18 | vgg16_bn | densenet121 | wrn16_8 | resnet50 "
                        "(default: digits_cnn for digits, resnet18 for CIFAR)")
    p.add_argument("--method", default="swat", help="swat | saw | meprop | dense")
    p.add_argument("--distribution", default="uniform",
                   help="uniform | erk | momentum (SWAT-M, the authors' per-step scheme) | snfs "
                        "(the earlier per-epoch SWAT-M)")
    p.add_argument("--sparsity", default=0.9, type=str, help="target sparsity in [0, 1)")
    p.add_argument("--period", default=1, type=str, help="Top-K threshold period (iterations)")
    p.add_argument("--structured", nargs="?", const="channel", default=None,
                   help="structured Top-K of the weights: channel (no value) | filter")
    p.add_argument("--topk-dims", default="nchw", help="nchw | chw | hw | random")
    p.add_argument("--recipe", default="project",
                   help="project | paper (Top-K period counted per epoch, linear layers and "
                        "structured weight masks recomputed every step, ties kept, WRN dropout "
                        "0.3: the authors' code; see docs/golden-model.md)")
    p.add_argument("--ties", default=None,
                   help="exact (keep exactly k, the hardware's rule) | keep (every element >= "
                        "the k-th magnitude; default with --recipe paper)")
    p.add_argument("--dropout", default=None, type=str,
                   help="dropout of WRN-16-8 (default 0; 0.3 with --recipe paper)")
    p.add_argument("--epochs", default=None, type=str, help="epochs (digits 10, CIFAR 150)")
    p.add_argument("--max-steps", default=None, type=str,
                   help="stop after this many optimisation steps")
    p.add_argument("--batch-size", default=None, type=str,
                   help="global batch size (digits 64, CIFAR 128, DenseNet 64)")
    p.add_argument("--lr", default=None, type=str, help="initial lr (digits 0.05, CIFAR 0.1)")
    p.add_argument("--momentum", default=0.9, type=str)
    p.add_argument("--weight-decay", default=None, type=str, help="(default 5e-4)")
    _bool_flag(p, "nesterov", "Nesterov momentum (default: on for WRN, off otherwise)")
    p.add_argument("--schedule", default="step", help="step | cosine | constant")
    p.add_argument("--milestones", default=None,
                   help="comma-separated epochs where lr *= gamma (default 1/3 and 2/3 of epochs)")
    p.add_argument("--gamma", default=None, type=str, help="step factor (default 0.1)")
    p.add_argument("--warmup-epochs", default=0.0, type=str, help="linear lr warm-up")
    p.add_argument("--label-smoothing", default=0.0, type=str)
    p.add_argument("--seed", default=0, type=str)
    p.add_argument("--threads", default=None, type=str,
                   help="torch intra-op threads (default: 1 for digits, torch's default otherwise)")
    p.add_argument("--backend", default="torch",
                   help="GEMMs of the SWAT layers: torch (float) | intref (int8 reference) | "
                        "rtl (Verilator core) | fpga (board on --port)")
    p.add_argument("--grad-quant", default="tensor",
                   help="int8 dY of the integer backends: tensor | row | stochastic | split | "
                        "row-split")
    p.add_argument("--port", default=None, help="serial port of --backend fpga")
    p.add_argument("--out", default="runs/swat", help="folder for checkpoint, metrics, plots")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint (no value: <out>/checkpoint.pt)")
    p.add_argument("--force", action="store_true",
                   help="start again in an --out that already holds a run (removes its "
                        "checkpoint and metrics)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--quiet", action="store_true", help="no per-epoch summary lines")
    return p


def _parse_num(name: str, s, kind):
    if s is None:
        return None
    try:
        return kind(s)
    except ValueError:
        try:
            v = float(s)
        except ValueError:
            raise ConfigError(f"--{name} must be a number, got {s!r}") from None
        if kind is int and v.is_integer():
            return int(v)
        return v  # validated (and rejected with a clear message) by TrainConfig.resolved


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """The (unresolved) :class:`TrainConfig` of a ``swat-train`` command line."""
    a = build_parser().parse_args(argv)
    ms = None
    if a.milestones is not None:
        ms = [_parse_num("milestones", s.strip(), int) for s in a.milestones.split(",")
              if s.strip()]
    return TrainConfig(
        dataset=a.dataset, data_dir=a.data_dir, model=a.model, method=a.method,
        distribution=a.distribution, sparsity=_parse_num("sparsity", a.sparsity, float),
        period=_parse_num("period", a.period, int), structured=a.structured or False,
        topk_dims=a.topk_dims, recipe=a.recipe, ties=a.ties,
        dropout=_parse_num("dropout", a.dropout, float), epochs=_parse_num("epochs", a.epochs, int),
        max_steps=_parse_num("max-steps", a.max_steps, int),
        batch_size=_parse_num("batch-size", a.batch_size, int),
        lr=_parse_num("lr", a.lr, float), momentum=_parse_num("momentum", a.momentum, float),
        weight_decay=_parse_num("weight-decay", a.weight_decay, float), nesterov=a.nesterov,
        schedule=a.schedule, milestones=ms, gamma=_parse_num("gamma", a.gamma, float),
        warmup_epochs=_parse_num("warmup-epochs", a.warmup_epochs, float),
        label_smoothing=_parse_num("label-smoothing", a.label_smoothing, float),
        seed=_parse_num("seed", a.seed, int), threads=_parse_num("threads", a.threads, int),
        out=a.out, resume=a.resume, force=a.force, backend=a.backend, grad_quant=a.grad_quant,
        port=a.port,
        progress=not a.no_progress, verbose=not a.quiet, plots=not a.no_plots,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swat-train`` / ``python -m sw.train``; returns the exit code."""
    from ..backend import BackendError
    from .loop import train

    try:
        cfg = config_from_args(argv).resolved()
        res = train(cfg)
    except (ConfigError, FileNotFoundError) as e:
        print(f"swat-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the backend (simulator process) is already closed by train()
        print("swat-train: interrupted", file=sys.stderr)
        return 130
    except BackendError as e:
        ck = Path(cfg.out) / "checkpoint.pt" if cfg.out else None
        hint = f"; the last checkpoint resumes: --resume {ck}" if ck and ck.is_file() else ""
        print(f"swat-train: error: {e}{hint}", file=sys.stderr)
        return 1
    except (ValueError, FloatingPointError) as e:
        print(f"swat-train: error: {e}", file=sys.stderr)
        return 1
    if res.final and res.rank == 0:
        f = res.final
        print(f"final: epoch {f['epoch']} step {res.steps} test acc {f['test_acc']:.4f} "
              f"test loss {f['test_loss']:.4f}" + (f" -> {res.out}" if res.out else ""))
    return 0
