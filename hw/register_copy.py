"""Copies of one register that yosys keeps apart, so the placer can put each by its loads.

A signal with many loads spread over the die (the clock enable of hundreds of FFs, the write
port of a block-RAM copy in every PE column, the ``go`` of every column) is driven by several
registers of the same value, one per group of loads, so that each can sit next to its group
instead of one register fanned out across the die (routing of that fan-out was the ULX3S
critical path several times, ``bitstreams/ulx3s/analysis.md``). But yosys merges registers
with the same input, clock, enable, reset and initial value (``opt_merge``; a ``keep`` on the
signal does not stop it), which gives back the one register. So every copy of one value takes
another :class:`Form`: kept inverted or not, with or without reset, initial value 0 or 1. The
value each copy stands for is the same every cycle (an inverted copy's register holds the
complement, and :attr:`RegisterCopy.q` inverts it back, which a LUT input or a clock-enable
polarity absorbs); a reset-less copy and one whose initial value differs from the value's
differ only before the first clock edge (or after a domain reset), which the user of each copy
makes harmless (an enable that qualifies the other copies, a buffer loaded whole before it is
read, a queue with no valid slot).

Which forms a set of copies uses is the caller's choice (which loads tolerate which forms, and
which form another register of the same input already has): ``hw.host_bridge``,
``hw.pe_array``, ``hw.column_issue`` and ``hw.bram.fan_out_writes`` keep their own lists.
"""

from typing import NamedTuple

from amaranth.hdl import Shape, Signal

__all__ = ["Form", "RegisterCopy"]


class Form(NamedTuple):
    """How one copy differs from the others (two copies of one value in one form are merged).

    Attributes
    ----------
    inverted : bool
        The register holds the complement of the value (its signal is named ``<name>_n``).
    reset_less : bool
        The register has no reset.
    init : int
        0 or 1: every bit of the register's initial (and reset) value, as the register holds
        it (an inverted copy with ``init`` 1 stands for a value that starts at 0).
    """

    inverted: bool
    reset_less: bool
    init: int


class RegisterCopy:
    """One register of a value, in form ``form`` (a :class:`Form` or a tuple of its fields),
    named ``name`` (``<name>_n`` if inverted), of shape ``shape`` (a plain ``Shape``).

    Assign it with :meth:`eq` in a synchronous domain; read it through :attr:`q`."""

    def __init__(self, name: str, form, shape=1):
        self.form = form = Form(*form)
        if form.init not in (0, 1):
            raise ValueError(f"RegisterCopy {name!r}: init must be 0 or 1, not {form.init!r}")
        init = (1 << Shape.cast(shape).width) - 1 if form.init else 0
        #: the register itself (the complement of the value for an inverted form)
        self.reg = Signal(shape, name=f"{name}_n" if form.inverted else name, init=init,
                          reset_less=form.reset_less)
        #: the value (the register, inverted back for an inverted form; one expression, made
        #: here, for every load)
        self.q = ~self.reg if form.inverted else self.reg

    def eq(self, value):
        """The statement that registers ``value`` (its complement for an inverted form)."""
        return self.reg.eq(~value if self.form.inverted else value)
