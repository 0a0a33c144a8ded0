"""The D and C buffer word layouts of the core (``docs/core-interface.md``).

``D [M, K]`` is stored M-tile by M-tile: word ``mt*K + k`` holds, in byte lane ``i`` (lane 0
least significant), ``D[mt*rows + i, k]`` (rows past ``M`` are zero). ``C [M, N]`` comes back
the same way with 32-bit lanes: word ``mt*N + n``, lane ``i`` = ``C[mt*rows + i, n]``.

A core with result logs (``hw.result_logs``, the default) returns C as ``cols`` logs of entries
``lanes | caddr << 32*rows`` (``caddr`` = the C word address ``mt*N + n``); :func:`gather_c`
turns them into the C buffer words above.

Two representations of a buffer word are in use, and both are defined here: a ``[words,
rows]`` lane array (what the simulators write through memory handles and the UART bridge
sends) and one Python ``int`` per word (what an Amaranth testbench writes to a wide memory).
"""

from __future__ import annotations

import numpy as np

__all__ = ["m_tiles", "pack_d", "unpack_d", "d_ints", "d_lanes", "pack_c", "unpack_c",
           "c_ints", "c_lanes", "gather_c"]


def m_tiles(m: int, rows: int) -> int:
    """Number of M-tiles ``ceil(m / rows)``."""
    return -(-int(m) // int(rows))


def _tile(x, rows: int, dtype) -> np.ndarray:
    """``X [M, L]`` -> words ``[ceil(M/rows)*L, rows]``: word ``mt*L + l``, lane ``i`` =
    ``X[mt*rows + i, l]`` (the layout of both D and C)."""
    x = np.asarray(x)
    m, length = x.shape
    mt = m_tiles(m, rows)
    pad = np.zeros((mt * rows, length), dtype=dtype)
    pad[:m] = x
    return np.ascontiguousarray(
        pad.reshape(mt, rows, length).transpose(0, 2, 1).reshape(mt * length, rows))


def pack_d(d, rows: int) -> np.ndarray:
    """``D [M, K]`` int8 -> D buffer words ``[ceil(M/rows)*K, rows]`` int8 (lane = row)."""
    return _tile(d, rows, np.int8)


def d_lanes(ints, rows: int) -> np.ndarray:
    """D buffer words as wide unsigned ``int``s -> ``[count, rows]`` int8 lanes."""
    raw = b"".join(int(w).to_bytes(rows, "little") for w in ints)
    return np.frombuffer(raw, dtype=np.int8).reshape(-1, rows).copy()


def unpack_d(words, m: int, k: int, rows: int) -> np.ndarray:
    """Inverse of :func:`pack_d`: D buffer words (lane array or wide ints) -> ``D [M, K]``."""
    a = np.asarray(words) if isinstance(words, np.ndarray) else None
    if a is None or a.ndim != 2:
        a = d_lanes(words, rows)
    mt = m_tiles(m, rows)
    d = a[:mt * k].reshape(mt, k, rows).transpose(0, 2, 1).reshape(mt * rows, k)
    return np.ascontiguousarray(d[:m]).astype(np.int8, copy=False)


def pack_c(c, rows: int) -> np.ndarray:
    """``C [M, N]`` int32 -> C buffer words ``[ceil(M/rows)*N, rows]`` (what the core writes)."""
    return _tile(c, rows, np.int32)


def c_ints(lanes) -> list[int]:
    """C buffer words ``[count, rows]`` int32 -> one unsigned ``int`` per word."""
    raw = np.ascontiguousarray(np.asarray(lanes).astype(np.int32)).view(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def d_ints(lanes) -> list[int]:
    """D buffer words ``[count, rows]`` (byte lanes) -> one unsigned ``int`` per word."""
    raw = np.ascontiguousarray(np.asarray(lanes).astype(np.int8)).view(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def c_lanes(words, rows: int) -> np.ndarray:
    """C buffer words as wide unsigned ``int``s -> ``[count, rows]`` int32 lanes."""
    mask = 0xFFFFFFFF
    ints = [int(w) for w in words]
    out = np.array([[(w >> (32 * i)) & mask for i in range(rows)] for w in ints],
                   dtype=np.uint64).reshape(len(ints), rows)
    return out.astype(np.uint32).view(np.int32)


def unpack_c(words, m: int, n: int, rows: int) -> np.ndarray:
    """C buffer words -> ``C [M, N]`` int32.

    ``words`` is a ``[ceil(M/rows)*N, rows]`` lane array, or a sequence of wide ``int``s (one
    per word, see :func:`c_lanes`).
    """
    a = np.asarray(words) if isinstance(words, np.ndarray) else None
    if a is None or a.ndim != 2:
        a = c_lanes(words, rows)
    mt = m_tiles(m, rows)
    c = a.reshape(mt, n, rows).transpose(0, 2, 1).reshape(mt * rows, n)
    return np.ascontiguousarray(c[:m]).astype(np.int32, copy=False)


def gather_c(entries, rows: int, count: int) -> list[int]:
    """Result-log entries -> C buffer words ``0 .. count-1`` (wide ``int`` s, see
    :func:`c_lanes`).

    ``entries``: the valid entries of every log (wide ``int`` s ``lanes | caddr << 32*rows``),
    in any order. Raises ``ValueError`` naming the first C word that is missing, written twice
    or out of range (a core that wrote its logs correctly never does that).
    """
    shift = 32 * int(rows)
    lane_mask = (1 << shift) - 1
    out: list = [None] * int(count)
    for e in entries:
        e = int(e)
        addr = e >> shift
        if addr >= count:
            raise ValueError(f"result log entry for C word {addr} outside 0..{count - 1}")
        if out[addr] is not None:
            raise ValueError(f"C word {addr} written twice")
        out[addr] = e & lane_mask
    missing = [a for a, w in enumerate(out) if w is None]
    if missing:
        raise ValueError(f"C word {missing[0]} missing from the result logs "
                         f"({len(missing)} of {count} missing)")
    return out
