"""The malformed-blob cases every test bench of the loader and the core runs.

One table, used by the Amaranth tests of the loader (``tests/test_loader.py``) and of the core
(``tests/test_core.py``) and by the Verilator bench (``tests/cocotb_core.py``), so that each
error code of :class:`~hw.contract.codes.LoaderError` is provoked the same way everywhere.

Each :class:`Case` is a blob (S buffer words), the shape registers and ``s_len``, and the set
of codes the hardware may report for it (``codes``): one code for a single violation; more
when a pointer and an entry violation race (the loader checks pointers and entries while
streaming, see ``sw.intref.core_model``). The cases that depend on the buffer sizes (the fit
checks, ``s_len`` beyond the S buffer, ``nnz`` beyond it) are made for the geometry given to
:func:`cases`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .blob import encode_words
from .codes import LoaderError

__all__ = ["Case", "BASE", "cases"]

#: The well-formed matrix every case mutates: ``S[3, 4]`` with an empty column, both int8
#: extremes and ``nnz = 6`` (``ptr = [0, 2, 4, 4, 6]``; entries from word ``4 + N = 8``).
BASE = np.array([[0, 3, 0, 1], [-128, 0, 0, 2], [5, 127, 0, 0]], dtype=np.int8)

#: Issue 13 item 8: ``ptr[6]`` is wrong (2, ``nnz`` is 1) and column 0's only entry has value
#: 0; the entry is checked before the dispatcher reaches ``ptr[6]``, so 7 may come before 3.
POINTER_AND_ENTRY = [0x53574154, 0x00060001, 1, 0, 1, 1, 1, 1, 1, 2, 0]


@dataclasses.dataclass(frozen=True)
class Case:
    """One malformed operation: S buffer ``words``, shape registers, ``s_len``, and the codes
    the hardware may report (``codes``, a frozenset of :class:`LoaderError`)."""

    name: str
    words: tuple
    m: int
    k: int
    n: int
    s_len: int
    codes: frozenset

    @property
    def code(self) -> LoaderError:
        """The lowest code the hardware may report (the only one for a single violation)."""
        return min(self.codes)


def cases(*, rows: int, d_depth: int, s_depth: int, c_depth: int, m: int = 3) -> list[Case]:
    """Every malformed case for a core of ``rows`` PE rows and the given buffer depths; ``m``
    is the M of the cases whose shape is otherwise right (``ceil(m/rows)·K`` and ``·N`` must
    fit the buffers)."""
    E = LoaderError
    k, n = BASE.shape
    good = [int(x) for x in encode_words(BASE)]
    e0 = 4 + n  # first entry word
    out = []

    def add(name, code, edit=None, *, mm=m, kk=k, nn=n, s_len=None, words=None):
        w = list(good if words is None else words)
        if edit is not None:
            edit(w)
        codes = frozenset(code if isinstance(code, set) else {code})
        out.append(Case(name, tuple(w), mm, kk, nn, len(w) if s_len is None else s_len, codes))

    def setw(i, v):
        return lambda w: w.__setitem__(i, v)

    def entry_k(i, kk):
        return lambda w: w.__setitem__(e0 + i, (w[e0 + i] & ~0xFFFF) | kk)

    add("bad magic", E.MAGIC, setw(0, good[0] ^ 1))
    add("zero blob", E.MAGIC, words=[0] * len(good))
    add("header K differs", E.SHAPE, setw(1, (k + 1) | n << 16))
    add("header N differs", E.SHAPE, setw(1, k | (n + 1) << 16))
    add("ptr[0] != 0", E.PTR, setw(3, 1))
    add("ptr decreasing", E.PTR, setw(5, 1))  # ptr[2] = 1 < ptr[1] = 2
    add("ptr above nnz", E.PTR, setw(5, 0xFFFF_FFF0))
    add("ptr[N] != nnz", E.PTR, setw(3 + n, good[2] - 1))
    add("truncated by s_len", E.TRUNC, s_len=len(good) - 1)
    add("truncated header", E.TRUNC, s_len=2)
    add("nnz beyond the buffer", E.TRUNC,
        lambda w: (w.__setitem__(2, s_depth), w.__setitem__(3 + n, s_depth)))
    add("s_len beyond the buffer", E.TRUNC, s_len=s_depth + 1)
    add("index == K", E.INDEX, entry_k(1, k))
    add("index 0xFFFF", E.INDEX, entry_k(3, 0xFFFF))
    add("index repeated", E.ORDER, entry_k(1, 1))  # entry 0 of the column has k = 1 too
    add("indices decreasing", E.ORDER, entry_k(1, 0))
    add("value 0", E.ENTRY, lambda w: w.__setitem__(e0 + 2, w[e0 + 2] & 0xFF00FFFF))
    add("reserved bits", E.ENTRY, lambda w: w.__setitem__(e0 + 4, w[e0 + 4] | 1 << 24))
    add("pointer and entry", {E.PTR, E.ENTRY}, words=POINTER_AND_ENTRY, mm=1, kk=1, nn=6)
    add("M = 0", E.FIT, mm=0)
    add("K = 0", E.FIT, kk=0)
    add("N = 0", E.FIT, nn=0)
    for what, depth, per_tile in (("D", d_depth, k), ("C", c_depth, n)):
        big = (depth // per_tile + 1) * rows  # one M-tile more than the buffer holds
        if big <= 0xFFFF:
            add(f"M beyond the {what} buffer", E.FIT, mm=big)
    return out
