"""Constructor-argument checks shared by the gateware components.

Every component of ``hw/`` takes integer parameters (array size, buffer depths, lanes). A wrong
*type* is a programming error and raises :class:`TypeError`; a value out of *range* raises
:class:`ValueError`. Both messages name the component and the parameter, so that the first line
of a traceback (or the one line a command-line tool prints) says what to fix:

>>> check_int("SwatCore", "rows", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: SwatCore: rows must be >= 1, not 0

A component whose constructor raised was never elaborated, so Amaranth warns about an unused
elaboratable when it is collected: the object exists (``Elaboratable.__new__`` ran) before its
``__init__`` rejects a parameter. :func:`rejected_unused` on an ``__init__`` silences that
warning for the rejected object only (a command-line tool then prints its one-line error and
nothing else, without hiding the warning of any other object). Every component of ``hw/`` that
checks its parameters has it (and ``SwatSystem``, which a refusing ``SwatCore`` leaves
half-made); their tests check with the ``assert_refused`` fixture (``tests/conftest.py``) that
a refused object does not warn, so that they fail without it.
"""

from __future__ import annotations

import functools

__all__ = ["check_int", "rejected_unused"]


def rejected_unused(init):
    """Decorator of an elaboratable's ``__init__``: an object whose ``__init__`` raised is
    marked so that it does not warn "created but never used" when collected (it was refused,
    not forgotten); the exception goes on unchanged."""
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._MustUse__silence = True  # amaranth's MustUse: this object only
            raise
    return wrapper


def check_int(owner: str, name: str, value, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) within ``[minimum, maximum]``.

    Parameters
    ----------
    owner : str
        Component name for the message (e.g. ``"SwatCore"``).
    name : str
        Parameter name for the message.
    value : object
        The argument to check.
    minimum, maximum : int, optional
        Inclusive bounds; ``None`` leaves that side open.

    Raises
    ------
    TypeError
        ``"{owner}: {name} must be an int, not {value!r}"``.
    ValueError
        ``"{owner}: {name} must be >= {minimum}, not {value}"`` (or ``<= {maximum}``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: {name} must be <= {maximum}, not {value}")
    return value
