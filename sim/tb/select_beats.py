"""Payload integers of the threshold-select unit's internal framed beats, for testbenches.

A framed beat (``hw.select_layouts.framed_layout``) is what the unit's framer hands to the
histogram and the keep logic: ``lanes`` int8 elements, the mask of lanes that hold elements of
the pass, and the end-of-pass flag. The sub-component tests feed these directly.
"""

from __future__ import annotations

__all__ = ["framed_beats"]


def framed_beats(values, lanes: int, *, filler: int = -128, index=None,
                 index_width: int = 32) -> list[int]:
    """Framed-beat payloads of the flat int8 sequence ``values`` (``filler`` in the lanes past
    its end, which the mask marks as empty); ``index`` (flat, like ``values``) fills the
    ``index_width``-bit source-index side band after ``final``."""
    values = [int(v) for v in values]
    nbeats = -(-len(values) // lanes)
    out = []
    for b in range(nbeats):
        chunk = values[b * lanes:(b + 1) * lanes]
        word = 0
        for j in range(lanes):
            word |= ((chunk[j] if j < len(chunk) else filler) & 0xFF) << (8 * j)
        word |= ((1 << len(chunk)) - 1) << (8 * lanes)
        word |= int(b == nbeats - 1) << (9 * lanes)
        if index is not None:
            for j, x in enumerate(index[b * lanes:(b + 1) * lanes]):
                word |= (int(x) & ((1 << index_width) - 1)) << (9 * lanes + 1 + index_width * j)
        out.append(word)
    return out
