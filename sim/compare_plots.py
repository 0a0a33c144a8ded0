"""The compare job's figures: where each layer's cycles go, and the speedup of each pass.

* :func:`plot_breakdown` (``cycles_breakdown{tag}.png``): per layer and pass, the RTL cycles
  split by the core's PE-column counters (summed over columns, divided by ``cols``): **busy**
  (issuing an effectual entry), **stalled** (work left but not issuing: waiting on the output
  path or the dispatcher), **idle** (no work left: the tail while other columns finish, and
  the start and drain of each core operation; the three counters cover every cycle of every
  column), and the threshold-select cycles of the GEMM's blob that two S buffers would not
  hide behind the previous GEMM (**exposed select**: the core's counter for GEMMs run whole
  with the select unit in the loop, the loop's schedule replayed on their cycles for sampled
  ones, :func:`sim.select_sampled.exposed_model`; the title says which).
  Sampled GEMMs show their extrapolated counters.
* :func:`plot_pass_speedups` (``speedup_passes{tag}.png``): per pass the speedup over the same
  core on the operands without Top-K and over truly dense operands, beside 1/density and,
  for ResNet-50, the paper's Table 6.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["CATEGORIES", "breakdown", "plot_breakdown", "plot_pass_speedups"]

#: The cycle categories of :func:`breakdown`, in stacking order.
CATEGORIES = ("busy", "stalled", "idle (tail, start, drain)", "exposed select")
_PASS_TITLES = {"forward": "forward", "backward_input": "input gradient",
                "backward_weight": "weight gradient", "backward": "backward (input + weight)"}


def breakdown(row: dict, cols: int) -> dict:
    """``{category: cycles}`` of one row of the compare job (see the module docstring)."""
    busy = row.get("busy_cycles", 0) / cols
    stall = row.get("stall_cycles", 0) / cols
    idle = row.get("idle_cycles", 0) / cols
    idle += max(0.0, row["rtl_cycles"] - busy - stall - idle)  # none: the counters cover all
    return dict(zip(CATEGORIES, (busy, stall, idle, row.get("select_exposed_cycles", 0)),
                    strict=True))


def plot_breakdown(rows, summary: dict, path: Path) -> None:
    """One panel per pass, one stacked bar per layer (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = int(summary["array"].split("x")[1])
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    passes = [p for p in ("forward", "backward_input", "backward_weight")
              if any(r["pass"] == p for r in rows)]
    fig, axes = plt.subplots(len(passes), 1, figsize=(max(8.0, 0.2 * len(layers) + 3),
                                                      2.6 * len(passes) + 1.2),
                             sharex=True, squeeze=False)
    x = np.arange(len(layers))
    colors = ("tab:green", "tab:red", "tab:orange", "tab:purple")
    for ax, p in zip(axes[:, 0], passes, strict=True):
        by = {r["layer"]: breakdown(r, cols) for r in rows if r["pass"] == p}
        bottom = np.zeros(len(layers))
        for cat, color in zip(CATEGORIES, colors, strict=True):
            vals = np.array([by[n][cat] if n in by else 0.0 for n in layers])
            ax.bar(x, vals, 0.8, bottom=bottom, color=color, label=cat)
            bottom += vals
        tot = sum(sum(b.values()) for b in by.values())
        share = {c: sum(b[c] for b in by.values()) / tot if tot else 0 for c in CATEGORIES}
        ax.set_title(f"{_PASS_TITLES[p]}: " + ", ".join(f"{c} {share[c]:.1%}"
                                                         for c in CATEGORIES), fontsize=8)
        ax.set_ylabel("cycles")
    axes[0, 0].legend(fontsize=7, ncol=len(CATEGORIES), loc="upper right")
    axes[-1, 0].set_xticks(x, layers, rotation=90, fontsize=6 if len(layers) > 30 else 8)
    # the source without its details in parentheses ("rtl (3 whole GEMMs) + model (...)")
    src = re.sub(r":[^()]*\)", ")", summary.get("totals", {}).get("select_exposed_source",
                                                                  "model"))
    fig.suptitle(f"{summary['model']}: where the RTL cycles go ({summary['array']}, "
                 f"{summary['sparsity']:.0%} sparsity, batch {summary['batch']}; exposed "
                 f"select: {src})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pass_speedups(summary: dict, path: Path) -> None:
    """Bars per pass: speedup vs dense operands and vs truly dense; 1/density; the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = [p for p in ("forward", "backward_input", "backward_weight", "backward")
              if summary["passes"].get(p, {}).get("speedup")]
    rec = [summary["passes"][p] for p in passes]
    x = np.arange(len(passes))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.bar(x - 0.2, [r["speedup"] for r in rec], 0.4,
           label="vs same core, operands without Top-K")
    if all(r.get("speedup_vs_truly_dense") for r in rec):
        ax.bar(x + 0.2, [r["speedup_vs_truly_dense"] for r in rec], 0.4,
               label="vs same core, truly dense operands")
    inv = 1 / (1 - summary["sparsity"]) if summary["sparsity"] < 1 else None
    if inv:
        ax.axhline(inv, color="k", ls="--", lw=1, label=f"1 / density = {inv:.1f}")
    paper = summary.get("paper_table6") or {}
    for i, p in enumerate(passes):
        if p in paper:
            ax.plot([i - 0.4, i + 0.4], [paper[p]] * 2, color="tab:red", lw=2.5,
                    label="paper Table 6" if p == "forward" else None)
    top = max([r["speedup"] for r in rec] + [r.get("speedup_vs_truly_dense") or 0 for r in rec]
              + [inv or 0] + list(paper.values()))
    ax.set_ylim(0, top * 1.35)  # room for the legend above the bars
    ax.set_xticks(x, [_PASS_TITLES[p] for p in passes], fontsize=8)
    ax.set_ylabel("speedup (RTL cycles)")
    ax.set_title(f"{summary['model']}: speedup per pass at {summary['sparsity']:.0%} sparsity "
                 f"({summary['array']}, batch {summary['batch']})", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
