"""Reading an FST waveform's block list and signal names, for tests (no FST library needed).

An FST file is a sequence of blocks: a type byte, a big-endian 64-bit length (counting itself)
and the payload. Block 0 is the header; the hierarchy (scopes and variable names) is block 4
(gzip), 6 (LZ4) or 7 (LZ4 twice), its payload starting with the 64-bit uncompressed length.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HEADER, HIER_GZ, HIER_LZ4, HIER_LZ4DUO = 0, 4, 6, 7


def blocks(path) -> list[tuple[int, bytes]]:
    """``[(type, payload)]`` of the file; raises ``ValueError`` if it is cut short."""
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        if i + 9 > len(data):
            raise ValueError(f"{path}: truncated block header at byte {i}")
        kind, length = data[i], struct.unpack(">Q", data[i + 1:i + 9])[0]
        if length < 8 or i + 1 + length > len(data):
            raise ValueError(f"{path}: block {kind} at byte {i} runs past the end")
        out.append((kind, data[i + 9:i + 1 + length]))
        i += 1 + length
    return out


def _lz4_block(src: bytes, size: int) -> bytes:
    """Decompress one LZ4 block (the format FST's LZ4 hierarchy uses)."""
    out, i = bytearray(), 0
    while i < len(src):
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                lit += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        out += src[i:i + lit]
        i += lit
        if i >= len(src):
            break
        off = src[i] | src[i + 1] << 8
        i += 2
        n = (token & 15) + 4
        if token & 15 == 15:
            while True:
                n += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        for _ in range(n):
            out.append(out[-off])
    if len(out) != size:
        raise ValueError(f"LZ4 block: {len(out)} bytes, expected {size}")
    return bytes(out)


def hierarchy(path) -> bytes:
    """The uncompressed hierarchy block (scopes and variable names, NUL-terminated)."""
    for kind, payload in blocks(path):
        size = struct.unpack(">Q", payload[:8])[0]
        if kind == HIER_GZ:
            return zlib.decompress(payload[8:], zlib.MAX_WBITS | 32)
        if kind == HIER_LZ4:
            return _lz4_block(payload[8:], size)
        if kind == HIER_LZ4DUO:
            once = struct.unpack(">Q", payload[8:16])[0]
            return _lz4_block(_lz4_block(payload[16:], once), size)
    raise ValueError(f"{path}: no hierarchy block")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _cstr(data: bytes, i: int) -> tuple[str, int]:
    j = data.index(b"\0", i)
    return data[i:j].decode(errors="replace"), j + 1


def signals(path) -> dict[str, int]:
    """``{scope.path.name: width}`` of every variable in the file's hierarchy (a name's
    ``[msb:lsb]`` suffix dropped)."""
    data, i, scope, out = hierarchy(path), 0, [], {}
    while i < len(data):
        tag = data[i]
        i += 1
        if tag == 254:  # scope: type, name, component
            name, i = _cstr(data, i + 1)
            _, i = _cstr(data, i)
            scope.append(name)
        elif tag == 255:  # upscope
            scope.pop()
        elif tag == 252:  # attribute: type, subtype, name, argument
            _, i = _cstr(data, i + 2)
            _, i = _varint(data, i)
        elif tag == 253:  # attribute end
            pass
        else:  # variable: type, direction, name, length, alias
            name, i = _cstr(data, i + 1)
            width, i = _varint(data, i)
            _, i = _varint(data, i)
            out[".".join([*scope, name.split(" [")[0]])] = width
    return out
