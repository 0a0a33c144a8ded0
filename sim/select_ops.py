"""The threshold-select unit's command and status as the C++ harness sends and returns them.

:meth:`sim.harness.CoreSim.select_begin` streams a dense int8 matrix through the core's
``sel.i`` with one command (``sel.cmd``, ``hw.select_layouts.CommandLayout``) and
:meth:`~sim.harness.CoreSim.select_wait` returns the unit's status and the blob read back from
the S buffer it wrote. This module packs the command into the bits of the Verilog port and
unpacks the answer (``OP_SEL_WAIT`` in ``sim/cpp/core_main.cpp``), with the bit offsets taken
from the Amaranth layouts themselves, so a changed layout changes one place.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hw.contract.codes import SelectError, SelectMode

from .bench import SimulationError

__all__ = ["SelectFailed", "SelectStatus", "pack_command", "parse_status", "passes",
           "KEEP_ALL_TIES"]

#: A tie budget larger than any tensor: GIVEN ``(t, KEEP_ALL_TIES)`` keeps ``|x| >= t``.
KEEP_ALL_TIES = 0xFFFF_FFFF
_HELD_FIELDS = ("threshold", "ties", "cut_row", "cut_col", "cut_any", "cut_index")
_STATUS_WORDS = 9 + 12  # scalar words, then 6 tick stamps (lo, hi)


class SelectFailed(SimulationError):
    """The threshold-select unit reported an error code (or never raised ``done``)."""


@dataclasses.dataclass
class SelectStatus:
    """What the unit reported at ``done`` (``sel.status``) plus the harness's tick stamps.

    ``held`` is the held selection (``threshold, ties, cut_row, cut_col, cut_any``);
    ``exposed_cycles`` the core's free-running ``sel.exposed_cycles`` counter (cycles with the
    unit busy and no GEMM running) after the operation: take differences. ``ticks``: clock
    cycles of the process at ``begin``, command ``taken``, ``done``, ``now`` and of the last
    GEMM's ``gemm_start`` / ``gemm_done``. ``blob``: the words of the S buffer it wrote
    (``s_len`` of them), ``None`` when not read or on an error.
    """

    timed_out: bool
    error: bool
    code: int
    nnz: int
    s_len: int
    bank: int
    cycles: int
    held_valid: bool
    exposed_cycles: int
    ticks: dict
    held: dict
    blob: np.ndarray | None = None

    @property
    def code_name(self) -> str:
        if self.timed_out:
            return "TIMEOUT (no done)"
        try:
            return SelectError(self.code).name
        except ValueError:
            return f"code {self.code}"

    def check(self, label: str = "") -> None:
        """Raise :class:`SelectFailed` (one line) when the unit reported an error."""
        if self.timed_out or self.error:
            where = f" ({label})" if label else ""
            raise SelectFailed(f"threshold-select unit{where}: error {self.code} "
                               f"{self.code_name} after {self.cycles} cycles")


def passes(mode, by_index: bool = False) -> int:
    """Times the stream is sent: twice for FULL (histogram pass, then keep pass) and for
    THRESHOLD with ``by_index`` (pass 1, then the cut pass that writes nothing), else once."""
    mode = SelectMode(int(mode))
    return 2 if mode == SelectMode.FULL or (mode == SelectMode.THRESHOLD and by_index) else 1


def _field(layout, name):
    from amaranth.hdl import Shape

    f = layout[name]
    return f.offset, Shape.cast(f.shape).width


def _held_value(given) -> dict:
    if given is None:
        return dict.fromkeys(_HELD_FIELDS, 0)
    if isinstance(given, dict):
        return {k: int(given.get(k, 0)) for k in _HELD_FIELDS}
    vals = list(given) + [0] * (len(_HELD_FIELDS) - len(given))
    return {k: int(v) for k, v in zip(_HELD_FIELDS, vals, strict=True)}


def pack_command(mode, *, keep: int = 0, rows: int, cols: int, transpose: bool = False,
                 bank: int = 1, given=None, by_index: bool = False) -> bytes:
    """The bits of ``sel.cmd.payload`` (``CommandLayout``) as little-endian 32-bit words;
    ``given``: ``(threshold, ties, cut_row, cut_col, cut_any, cut_index)`` or a dict."""
    from hw.select_layouts import CommandLayout, HeldLayout

    value = 0
    fields = {"mode": int(SelectMode(int(mode))), "keep": keep, "rows": rows, "cols": cols,
              "transpose": int(bool(transpose)), "bank": bank}
    if "by_index" in CommandLayout.members:
        fields["by_index"] = int(bool(by_index))
    elif by_index:
        raise ValueError("select command: this unit has no by_index mode")
    for name, v in fields.items():
        off, width = _field(CommandLayout, name)
        if not 0 <= int(v) < 1 << width:
            raise ValueError(f"select command: {name}={v} does not fit {width} bits")
        value |= int(v) << off
    g_off = CommandLayout["given"].offset
    for name, v in _held_value(given).items():
        if name not in HeldLayout.members:
            continue
        off, width = _field(HeldLayout, name)
        if not 0 <= v < 1 << width:
            raise ValueError(f"select command: given.{name}={v} does not fit {width} bits")
        value |= v << (g_off + off)
    words = (CommandLayout.size + 31) // 32
    return value.to_bytes(4 * words, "little")


def parse_status(w: np.ndarray) -> SelectStatus:
    """The answer of ``OP_SEL_WAIT``: scalar words, tick stamps, held words, blob words."""
    from hw.select_layouts import HeldLayout

    w = np.asarray(w, dtype=np.uint64)
    held_words = (HeldLayout.size + 31) // 32
    t = [int(w[9 + 2 * i]) | int(w[10 + 2 * i]) << 32 for i in range(6)]
    raw = sum(int(x) << (32 * i) for i, x in
              enumerate(w[_STATUS_WORDS:_STATUS_WORDS + held_words]))
    held = {}
    for name in _HELD_FIELDS:
        if name not in HeldLayout.members:
            continue
        off, width = _field(HeldLayout, name)
        held[name] = (raw >> off) & ((1 << width) - 1)
    rest = w[_STATUS_WORDS + held_words:]
    st = SelectStatus(
        timed_out=bool(w[0]), error=bool(w[1]), code=int(w[2]), nnz=int(w[3]), s_len=int(w[4]),
        bank=int(w[5]), cycles=int(w[6]), held_valid=bool(w[7]), exposed_cycles=int(w[8]),
        ticks=dict(zip(("begin", "taken", "done", "now", "gemm_start", "gemm_done"), t,
                       strict=True)),
        held=held, blob=rest.astype(np.uint32) if len(rest) else None)
    return st
