"""PyTorch golden model of Sparse Weight Activation Training (SWAT, Raihan & Aamodt 2020)."""

from __future__ import annotations


def __getattr__(name):
    # Lazy so that `import sw` stays cheap for the hardware side (no torch import).
    if name == "swatify":
        from .swatify import swatify

        return swatify
    raise AttributeError(f"module 'sw' has no attribute {name!r}")
