"""Command line of the compare job (``python -m sim.compare``), checked before any work.

Every argument is validated while parsing, so a bad one costs a second instead of a training
run: the job exits with status 2 and one line naming the argument (``swat-compare: error:
argument --steps: must be an integer >= 1, got 0``), never with a traceback. The simulated
board's command line (``python -m sim.board``) uses the same parser and integer types.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

__all__ = ["parser", "parse", "array", "positive_int", "seed", "sparsity_list", "out_dir",
           "scheduler", "OneLineParser", "integer"]

MAX_ARRAY = 64  # PE rows or columns: larger arrays take too long to build and simulate
MAX_SEED = 2**32 - 1  # numpy's seed range


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def integer(text: str, base: int = 10) -> int:
    """``text`` as an integer of ``base`` (as :func:`int`; 0 takes ``0x10`` too), else the
    argument error ``must be an integer, got 'text'``."""
    try:
        return int(text, base)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text: str, base: int = 10) -> int:
    """An integer >= 1 (``--steps``, ``--batch``, ``--period``)."""
    v = integer(text, base)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--workers``)."""
    v = integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v}")
    return v


def seed(text: str) -> int:
    """A random seed in ``[0, 2**32 - 1]``."""
    v = integer(text)
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {v}")
    return v


def array(text: str) -> tuple[int, int]:
    """``RxC`` with ``1 <= R, C <= 64``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected RxC such as 8x8, got {text!r}")
    r, c = int(m.group(1)), int(m.group(2))
    if not (1 <= r <= MAX_ARRAY and 1 <= c <= MAX_ARRAY):
        raise argparse.ArgumentTypeError(
            f"rows and columns must lie in [1, {MAX_ARRAY}], got {r}x{c}")
    return r, c


def sparsity_list(text: str) -> list[float]:
    """One sparsity or a comma-separated list, each in ``[0, 1)``, no repeats."""
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected sparsities such as 0.9 or 0.8,0.9, got {text!r}") from None
        if not 0 <= v < 1:  # also rejects nan
            raise argparse.ArgumentTypeError(f"each sparsity must lie in [0, 1), got {part}")
        if v in out:
            raise argparse.ArgumentTypeError(f"sparsity {part} given twice")
        out.append(v)
    return out


def out_dir(text: str) -> Path:
    """A folder that exists or can be made, and can be written (checked by writing a file)."""
    out = Path(text)
    try:
        for parent in [out, *out.parents]:
            if parent.exists():
                if not parent.is_dir():
                    where = "is a file" if parent == out else f"lies under the file {parent}"
                    raise argparse.ArgumentTypeError(f"{out} {where}, not a folder")
                break
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{out} cannot be written: {e.strerror or e}") from None
    return out


def scheduler(text: str) -> str:
    """A Dask scheduler address ``tcp://HOST:PORT`` (or another Dask protocol)."""
    if not re.fullmatch(r"(tcp|tls|ucx|ws|wss|inproc)://[^\s:/]+(:\d{1,5})?", text):
        raise argparse.ArgumentTypeError(f"expected an address such as tcp://HOST:PORT, got "
                                         f"{text!r}")
    return text


def parser(models: list[str], description: str = "") -> argparse.ArgumentParser:
    """The compare job's parser; ``models`` are the accepted ``--model`` names."""
    ap = OneLineParser(prog="swat-compare", description=description)
    ap.add_argument("--model", choices=models, default="digits")
    ap.add_argument("--sparsity", type=sparsity_list, default=[0.9],
                    help="SWAT sparsity, or a comma-separated list (default 0.9)")
    ap.add_argument("--array", type=array, default=(8, 8), help="PE array RxC")
    ap.add_argument("--out", default="results", help="output folder (default results/)")
    ap.add_argument("--steps", type=positive_int, default=None,
                    help="training steps before the captured step (digits 300, CIFAR-shaped "
                         "models 150; ResNet-50 is not trained)")
    ap.add_argument("--batch", type=positive_int, default=None,
                    help="batch of the captured step (digits 64, CIFAR-shaped 16, ResNet-50 "
                         "32); also of the training, which for CIFAR-shaped models is at "
                         "least 16 (the step then takes the first items of its last batch)")
    ap.add_argument("--method", choices=["swat", "saw", "dense"], default="swat",
                    help="SWAT variant (meprop sparsifies dY, the dense operand: not lowered)")
    ap.add_argument("--distribution", choices=["uniform", "erk", "momentum", "snfs"],
                    default="uniform", help="per-layer sparsity distribution")
    ap.add_argument("--period", type=positive_int, default=1, help="Top-K period")
    ap.add_argument("--structured", choices=["none", "channel", "filter"], default="none",
                    help="structured weight sparsity (the weight masks are then the golden "
                         "model's, applied to the integers)")
    ap.add_argument("--data-dir", default=None,
                    help="folder with CIFAR-10 for the CIFAR-shaped models (else resized digits)")
    ap.add_argument("--sample-ops", type=non_negative_int, default=None,
                    help="simulate at most this many core operations per GEMM and extrapolate "
                         "the rest with the calibrated cycle model (0: all; default 0, "
                         "ResNet-50 16)")
    ap.add_argument("--whole-ops", type=non_negative_int, default=None,
                    help="with sampling, GEMMs with at most this many core operations run "
                         "whole (in the select loop; default --sample-ops, ResNet-50 48)")
    ap.add_argument("--baseline-sample-ops", type=non_negative_int, default=None,
                    help="the same for the two baselines (operands without Top-K, truly dense "
                         "operands; the latter is exact from one run per block size when "
                         "sampling); default min(8, --sample-ops)")
    ap.add_argument("--seed", type=seed, default=0)
    ap.add_argument("--sweep", action="store_true",
                    help="only the 64x576 @ 576x64 sparsity sweep (python -m sim.sweep)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the sweep after the layers")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--workers", type=non_negative_int, default=0,
                    help="local simulator processes (default: one per core, the digits job "
                         "one in-process; 1 = in-process)")
    ap.add_argument("--scheduler", type=scheduler, metavar="tcp://HOST:PORT",
                    help="spread the GEMMs over the workers of this running Dask scheduler")
    ap.add_argument("--waves", metavar="LAYER:PASS", nargs="?", const="",
                    help="also dump an FST waveform of one GEMM to OUT/waves/: this one (e.g. "
                         "features.3:forward; append ' dense' for its dense baseline), or the "
                         "first GEMM of the step when no name is given")
    return ap


def parse(argv, models: list[str], description: str = "") -> argparse.Namespace:
    """Parse and check ``argv``; exits 2 with one line on the first bad argument."""
    ap = parser(models, description)
    args = ap.parse_args(argv)
    if args.model in ("resnet50", "resnet-50") and args.distribution in ("momentum", "snfs"):
        ap.error(f"argument --distribution: {args.distribution} needs a training run; "
                 "ResNet-50 is not trained here (use uniform or erk)")
    # --out last: it creates the folder, which should not happen when another argument is bad
    try:
        args.out = out_dir(args.out)
    except argparse.ArgumentTypeError as e:
        ap.error(f"argument --out: {e}")
    return args
