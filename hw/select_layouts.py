"""Payload layouts and signatures of the threshold-select unit (``hw.threshold_select``).

One place for the shapes every sub-component of the unit agrees on: the input beat, the framed
beat (lane mask and end of pass added), the command, the held threshold pair, the status
members, the per-beat write record and the banked S-buffer write. ``docs/threshold-select.md``
describes what each field means at the unit's ports.
"""

from amaranth.hdl import Mux, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .contract.blob import MAGIC
from .contract.codes import BINS, SelectError, SelectMode

__all__ = [
    "BINS", "MAGIC", "Mode", "ErrorCode", "HeldLayout", "CommandLayout", "StatusSignature",
    "SelectHostSignature",
    "beat_layout", "framed_layout", "record_layout", "write_layout", "magnitude",
]



def _signal_enum(name, py_enum, shape):
    """An Amaranth enumeration ``name`` (usable as a port/signal shape) with the members of the
    plain ``IntEnum`` ``py_enum`` of ``hw.contract.codes``: the numbers are defined there only."""
    namespace = enum.EnumType.__prepare__(name, (enum.Enum,), shape=shape)
    for member in py_enum:
        namespace[member.name] = member.value
    namespace["__module__"] = __name__
    namespace["__qualname__"] = name
    cls = enum.EnumType(name, (enum.Enum,), namespace, shape=shape)
    cls.__doc__ = py_enum.__doc__
    return cls


#: Operation of a command (members and meaning: :class:`hw.contract.codes.SelectMode`).
Mode = _signal_enum("Mode", SelectMode, 2)
#: Sticky error code, cleared by the next command (:class:`hw.contract.codes.SelectError`).
ErrorCode = _signal_enum("ErrorCode", SelectError, 4)

#: The held selection: threshold ``t``, tie budget ``ties`` and the cut, the ``(row, col)`` and
#: the stream position ``cut_index`` (element number in the pass, from 0) of the last tie kept
#: by the last pass 2 that was neither transposed nor indexed (``cut_any = 0``: it kept none).
#: ``cut_index`` was appended last, so the other fields kept their bit offsets.
HeldLayout = data.StructLayout({
    "threshold": unsigned(8),
    "ties": unsigned(32),
    "cut_row": unsigned(16),
    "cut_col": unsigned(16),
    "cut_any": unsigned(1),
    "cut_index": unsigned(32),
})

#: One operation. ``rows, cols`` are ``K, N`` of ``S[K, N]``; ``keep`` is ``k`` (FULL,
#: THRESHOLD); ``given`` is the pair (and cut) for GIVEN; ``transpose`` (HELD, GIVEN) keeps the
#: ties by the cut; ``bank`` names the S buffer the blob goes to (double buffering);
#: ``by_index`` (HELD, GIVEN; a unit with a source-index side band) keeps a tie iff its beat
#: ``index`` is ``<= cut_index`` (an im2col stream of the tensor the cut came from); with
#: THRESHOLD it adds a cut pass (the stream replayed, nothing written) that holds the cut.
CommandLayout = data.StructLayout({
    "mode": Mode,
    "keep": unsigned(32),
    "rows": unsigned(16),
    "cols": unsigned(16),
    "transpose": unsigned(1),
    "bank": unsigned(1),
    "given": HeldLayout,
    "by_index": unsigned(1),
})


class StatusSignature(wiring.Signature):
    """What the unit reports (all members ``Out``): ``busy``; ``done`` from the end of an
    operation until the next command; ``error``/``error_code`` sticky until the next command;
    ``held``/``held_valid`` the held selection; ``nnz`` entries written, ``s_len`` blob words
    (``4 + cols + nnz``) and ``bank`` the S buffer written, all valid at ``done``; ``cycles``
    from the command to ``done``."""

    def __init__(self):
        super().__init__({
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "held": Out(HeldLayout, init={"threshold": BINS - 1}),
            "held_valid": Out(1),
            "nnz": Out(32),
            "s_len": Out(32),
            "bank": Out(1),
            "cycles": Out(32),
        })


class SelectHostSignature(wiring.Signature):
    """The unit's host-facing members (as the unit sees them): the dense input stream ``i``,
    the command stream ``cmd`` and the ``status``. A core that forwards the unit to its host
    exposes this signature flipped (its ``o`` goes into the core's S buffer instead)."""

    def __init__(self, lanes, index_width=0):
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes, index_width))),
            "cmd": In(stream.Signature(CommandLayout)),
            "status": Out(StatusSignature()),
        })


def _index_field(lanes, index_width):
    return {"index": data.ArrayLayout(unsigned(index_width), lanes)} if index_width else {}


def beat_layout(lanes, index_width=0):
    """Input beat: ``lanes`` signed int8 elements in stream order, ``last`` on the final beat
    and, with ``index_width > 0``, the source index of every lane (``index``, after ``last``:
    the position of the element in the tensor an indexed pass refers to)."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(8), lanes),
        "last": unsigned(1),
        **_index_field(lanes, index_width),
    })


def framed_layout(lanes, index_width=0):
    """A checked beat of one pass: the elements, which lanes hold elements of the matrix
    (``lane_valid``; lanes past ``rows * cols`` do not), whether it ends the pass and the
    source indices (``index_width > 0``)."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(8), lanes),
        "lane_valid": unsigned(lanes),
        "final": unsigned(1),
        **_index_field(lanes, index_width),
    })


def record_layout(lanes):
    """What a pass-2 beat leaves for the writer: the lane values (int8 bits), which lanes are
    kept entries (``emit``), which lanes end a column (``ends``) and the ``(row, col)`` of
    lane 0. Beats that write nothing leave no record."""
    return data.StructLayout({
        "value": data.ArrayLayout(unsigned(8), lanes),
        "emit": unsigned(lanes),
        "ends": unsigned(lanes),
        "row": unsigned(16),
        "col": unsigned(17),
    })


def write_layout(banks, row_width):
    """Banked S-buffer write: slot ``b`` (when ``en[b]``) writes blob word ``addr[b] * banks +
    b`` with ``data[b]`` into S buffer ``bank``."""
    return data.StructLayout({
        "bank": unsigned(1),
        "en": unsigned(banks),
        "addr": data.ArrayLayout(unsigned(row_width), banks),
        "data": data.ArrayLayout(unsigned(32), banks),
    })


def magnitude(x):
    """``|x|`` of a signed int8 value as 8 unsigned bits (``|-128| = 128``)."""
    return Mux(x < 0, -x, x)[:8]
