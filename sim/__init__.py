"""Verilator + cocotb simulation of the SWAT core.

Public entry point: :func:`sim.run_gemm` (see ``docs/contract.md``).
"""

from __future__ import annotations


def __getattr__(name):
    # Lazy: importing ``sim`` must not build anything or pull in cocotb.
    if name in ("run_gemm", "GemmResult"):
        from . import gemm

        return getattr(gemm, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
