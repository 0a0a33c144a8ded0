"""PNG plots of a training history (matplotlib, Agg backend: no display needed).

``plot_history(history, out_dir)`` writes ``accuracy.png``, ``loss.png`` and, when the records
carry per-layer statistics (``rec["layers"][name]``), ``sparsity.png`` (weight and activation
sparsity per layer) and ``thresholds.png`` (Top-K weight / activation thresholds per layer)
against the epoch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["plot_history"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _layer_series(history: list[dict], stat: str) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for rec in history:
        for name, stats in (rec.get("layers") or {}).items():
            v = stats.get(stat)
            if isinstance(v, int | float):
                xs, ys = out.setdefault(name, ([], []))
                xs.append(rec["epoch"])
                ys.append(v)
    return out


def _layer_plot(plt, history, stats: list[tuple[str, str]], ylabel: str, title: str,
                path: Path) -> Path | None:
    panels = [(s, label, _layer_series(history, s)) for s, label in stats]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (_, label, series) in zip(axes[0], panels, strict=True):
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if len(series) <= 24:
            ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_history(history: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Write the PNG plots of ``history`` under ``out_dir``; returns the paths written."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not history:
        return []
    ep = [r["epoch"] for r in history]
    written = []
    for key, ylabel, fname in (("acc", "accuracy", "accuracy.png"), ("loss", "loss", "loss.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for split in ("train", "test"):
            ys = [r.get(f"{split}_{key}") for r in history]
            if any(isinstance(y, int | float) for y in ys):
                ax.plot(ep, [float("nan") if y is None else y for y in ys], marker=".",
                        label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        try:
            written.append(_save(fig, out / fname))
        finally:
            plt.close(fig)
    p = _layer_plot(plt, history, [("weight_sparsity", "weights"),
                                   ("activation_sparsity", "activations")],
                    "sparsity", "per-layer sparsity", out / "sparsity.png")
    if p:
        written.append(p)
    p = _layer_plot(plt, history, [("weight_threshold", "weights"),
                                   ("activation_threshold", "activations")],
                    "Top-K threshold (magnitude)", "per-layer Top-K thresholds",
                    out / "thresholds.png")
    if p:
        written.append(p)
    return written
