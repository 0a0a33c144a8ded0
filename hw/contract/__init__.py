"""The hardware contract of the SWAT core, in one place.

Everything the gateware (``hw``), the golden model (``sw``), the simulator (``sim``) and the
FPGA host driver must agree on lives here, and nowhere else:

* :mod:`hw.contract.blob` -- the compressed-S blob (magic, header, column pointers, entries):
  ``encode`` / ``decode`` / ``DecodeError``;
* :mod:`hw.contract.codes` -- the loader's error codes and the threshold-select unit's modes
  and error codes (``IntEnum``);
* :mod:`hw.contract.words` -- the D and C buffer word layouts;
* :mod:`hw.contract.tiling` -- the host tiling planner (how a GEMM larger than the buffers is
  split into core operations);
* :mod:`hw.contract.cycles` -- the cycle formulas (ideal cycles, the schedule estimate, the
  threshold-select unit's cycle count);
* :mod:`hw.contract.malformed` -- the malformed-blob cases every test bench runs.

The package needs only numpy: neither torch nor Amaranth is imported, so the simulator, the
host driver and the gateware can all take their constants from it.
"""
