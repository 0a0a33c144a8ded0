"""hw.contract.blob: the encoder and the argument checks of the decoder (the violation table
of the format itself is tested in tests/test_compress.py through the public names)."""

import numpy as np
import pytest

from hw.contract.blob import MAGIC, DecodeError, blob_len, decode, encode, encode_words

S = np.array([[0, 3], [-128, 0], [0, 9]], dtype=np.int8)


def test_encode_words_layout():
    w = encode_words(S)
    assert w.dtype == np.uint32 and len(w) == blob_len(2, 3)
    assert list(w[:6]) == [MAGIC, 3 | 2 << 16, 3, 0, 1, 3]
    assert list(w[6:]) == [1 | 0x80 << 16, 0 | 3 << 16, 2 | 9 << 16]
    assert encode(S) == w.astype("<u4").tobytes()


@pytest.mark.parametrize("blob,name", [
    ([MAGIC, 3 | 2 << 16, 0, 0, 0, 0], "list"),
    (24, "int"),
    ("SWAT", "str"),
    (None, "NoneType"),
])
def test_decode_rejects_what_is_not_a_blob(blob, name):
    with pytest.raises(DecodeError) as ei:
        decode(blob, (3, 2))
    assert str(ei.value) == ("decode: blob must be bytes-like (bytes, bytearray, memoryview), "
                             f"got {name}")
    assert ei.value.codes == []


@pytest.mark.parametrize("shape,text", [
    ((4.5, 3), "decode: shape must be two integers (K, N), got (4.5, 3)"),
    ((3.0, 2), "decode: shape must be two integers (K, N), got (3.0, 2)"),
    (3, "decode: shape must be two integers (K, N), got 3"),
    ((3, 2, 1), "decode: shape must be two integers (K, N), got (3, 2, 1)"),
    ((True, 2), "decode: shape must be two integers (K, N), got (True, 2)"),
    ((-1, 2), "decode: shape (-1, 2) outside [0, 65535]"),
    ((3, 70000), "decode: shape (3, 70000) outside [0, 65535]"),
])
def test_decode_rejects_what_is_not_a_shape(shape, text):
    with pytest.raises(DecodeError) as ei:
        decode(encode(S), shape)
    assert str(ei.value) == text


def test_decode_takes_any_bytes_like_blob_and_integer_shape():
    blob = encode(S)
    for b in (blob, bytearray(blob), memoryview(blob), np.frombuffer(blob, dtype="<u4")):
        assert np.array_equal(decode(b, (np.int64(3), 2)), S)
