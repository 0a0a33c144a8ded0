"""Codes the units report and are told: loader errors, threshold-select modes and errors.

Plain ``IntEnum``s (no Amaranth), so the host, the simulator and the golden model compare
against the same numbers the gateware drives (the gateware builds its signal enums from these,
see ``hw.threshold_select``). Numbers are part of the contract (``docs/core-interface.md``):
never renumber a member.
"""

from enum import IntEnum

__all__ = ["LoaderError", "SelectMode", "SelectError", "BINS", "TIMEOUT_CODE"]


class LoaderError(IntEnum):
    """``SwatCore.error_code`` (sticky, first error kept), from the compressed-S loader."""

    #: no error
    NONE = 0
    #: word 0 is not :data:`hw.contract.blob.MAGIC`
    MAGIC = 1
    #: ``K``/``N`` in the header differ from the shape registers
    SHAPE = 2
    #: bad column pointers (``ptr[0] != 0``, decreasing, or ``ptr[N] != nnz``)
    PTR = 3
    #: ``s_len`` too small for the header or the layout, or larger than the S buffer
    TRUNC = 4
    #: an entry's row index is ``>= K``
    INDEX = 5
    #: row indices not strictly increasing within a column
    ORDER = 6
    #: an entry has value 0 or reserved bits set
    ENTRY = 7
    #: the shape does not fit the D or C buffer (or ``M``, ``K`` or ``N`` is 0)
    FIT = 8

    @property
    def text(self) -> str:
        """One line saying what the code means (for host-side error messages)."""
        return _LOADER_TEXT[self]


_LOADER_TEXT = {
    LoaderError.NONE: "no error",
    LoaderError.MAGIC: "bad magic",
    LoaderError.SHAPE: "K/N in the header differ from the shape registers",
    LoaderError.PTR: "bad column pointers",
    LoaderError.TRUNC: "truncated blob",
    LoaderError.INDEX: "entry index >= K",
    LoaderError.ORDER: "entry indices not strictly increasing",
    LoaderError.ENTRY: "entry value 0 or reserved bits set",
    LoaderError.FIT: "shape does not fit the buffers",
}

#: Reported by the simulation drivers in place of ``error_code`` when ``done`` never came
#: (4-bit code space, never produced by the loader).
TIMEOUT_CODE = 15

#: Magnitude bins of int8 (``|x|`` in ``0 .. 128``): the threshold-select histogram size.
BINS = 129


class SelectMode(IntEnum):
    """Operation of the threshold-select unit, the ``mode`` field of its command (2 bits)."""

    #: Pass 1 then pass 2 (the stream is sent twice); the new ``(t, ties)`` is held.
    FULL = 0
    #: Pass 2 only, with the held ``(t, ties)`` (inside a Top-K period, or with ``transpose``
    #: for the transposed blob of the matrix just selected).
    HELD = 1
    #: Pass 1 only: compute and hold ``(t, ties)``, write nothing. With the command's
    #: ``by_index`` also a cut pass (the stream sent again) that holds the cut, still writing
    #: nothing.
    THRESHOLD = 2
    #: Pass 2 only, with the pair of the command's ``given`` field; it becomes the held pair.
    GIVEN = 3


class SelectError(IntEnum):
    """Sticky error code of the threshold-select unit (4 bits), cleared by the next command."""

    NONE = 0
    #: ``rows == 0`` or ``cols == 0``.
    SHAPE = 1
    #: ``keep > rows * cols`` (modes FULL and THRESHOLD).
    KEEP = 2
    #: a beat with ``last`` arrived before the ``rows * cols``-th element (stream too short).
    SHORT = 3
    #: the beat holding the ``rows * cols``-th element had no ``last`` (stream too long).
    LONG = 4
    #: the blob (``4 + cols + nnz`` words) does not fit ``depth`` words.
    OVERFLOW = 5
    #: mode HELD but no threshold has been computed or given since reset.
    NO_THRESHOLD = 6
    #: mode GIVEN with a given threshold above 128.
    BAD_THRESHOLD = 7
    #: ``by_index`` (HELD, GIVEN) on a unit built without the source-index side band.
    NO_INDEX = 8
