"""Compressed sparse ``S`` (CSC) as read by the gateware loader: the public names.

The format, the encoder and the validating decoder are defined once, in
:mod:`hw.contract.blob` (layout table in its docstring and in ``docs/core-interface.md``); the
error codes in :class:`hw.contract.codes.LoaderError`. This module keeps the public names of
the golden model working: ``sw.compress.encode(s)`` / ``sw.compress.decode(blob, shape)`` with
``decode(encode(s), s.shape) == s``, ``DecodeError`` (a ``ValueError`` whose ``codes`` list
the loader's error codes) and the ``ERR_*`` constants (members of ``LoaderError``).
"""

from hw.contract.blob import (
    MAGIC,
    MAX_DIM,
    DecodeError,
    blob_len,
    decode,
    encode,
    to_bytes,
    words,
)
from hw.contract.codes import LoaderError

__all__ = [
    "MAGIC", "MAX_DIM", "DecodeError", "encode", "decode", "words", "to_bytes", "blob_len",
    "ERR_NONE", "ERR_MAGIC", "ERR_SHAPE", "ERR_PTR", "ERR_TRUNC", "ERR_INDEX",
    "ERR_ORDER", "ERR_ENTRY", "ERR_FIT",
]

ERR_NONE, ERR_MAGIC, ERR_SHAPE = LoaderError.NONE, LoaderError.MAGIC, LoaderError.SHAPE
ERR_PTR, ERR_TRUNC, ERR_INDEX = LoaderError.PTR, LoaderError.TRUNC, LoaderError.INDEX
ERR_ORDER, ERR_ENTRY, ERR_FIT = LoaderError.ORDER, LoaderError.ENTRY, LoaderError.FIT

