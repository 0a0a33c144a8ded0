"""Plots of hardware-in-the-loop runs: RTL cycles per step, test accuracy against step.

``plot_cycles({label: steps}, path)``: one run draws the cycles of each pass per step (stacked)
and the threshold-select cycles; several runs draw their total cycles per step side by side.
``plot_accuracy({label: [histories]}, path)``: test accuracy against step, the mean over the
seeds of each label with a band of ± one standard deviation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .hil import PASSES
from .plots import _plt, _save

__all__ = ["plot_cycles", "plot_accuracy"]

_PASS_LABEL = {"forward": "forward", "backward_input": "input gradient",
               "backward_weight": "weight gradient"}


def plot_cycles(runs: dict[str, list[dict]], path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if len(runs) == 1:
        (label, steps), = runs.items()
        x = [s["step"] for s in steps]
        ys = [[s.get(f"cycles_{p}") or 0 for s in steps] for p in PASSES]
        ax.stackplot(x, *ys, labels=[_PASS_LABEL[p] for p in PASSES], alpha=0.8)
        ax.plot(x, [s.get("select_cycles") or 0 for s in steps], "k--", lw=1,
                label="threshold select (W and A)")
        ax.set_title(f"core cycles per training step ({label})")
    else:
        for label, steps in runs.items():
            ax.plot([s["step"] for s in steps], [s.get("cycles") or 0 for s in steps],
                    label=label, lw=1)
        ax.set_title("core cycles per training step")
    return _finish(plt, fig, ax, "cycles", path)


def plot_accuracy(runs: dict[str, list[list[dict]]], path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "x")]
    for i, (label, histories) in enumerate(runs.items()):
        ls, mk = styles[i % len(styles)]  # identical series (intref, rtl) stay visible
        n = min(len(h) for h in histories)
        x = [histories[0][i]["step"] for i in range(n)]
        acc = np.array([[100 * h[i]["test_acc"] for i in range(n)] for h in histories])
        mean, std = acc.mean(axis=0), acc.std(axis=0)
        ax.plot(x, mean, ls=ls, marker=mk, ms=4, lw=2.2 - 0.4 * (i % 4),
                label=f"{label} ({len(histories)} seeds)")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    return _finish(plt, fig, ax, "test accuracy (%)", path)


def _finish(plt, fig, ax, ylabel: str, path) -> Path:
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
