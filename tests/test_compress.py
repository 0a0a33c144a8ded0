"""sw.compress: bit layout, round trip, and every corruption is caught (hypothesis)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sw import compress
from sw.compress import MAGIC, DecodeError, decode, encode, to_bytes, words


@st.composite
def sparse_matrices(draw, max_k=40, max_n=12):
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    dens = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    rng = np.random.default_rng(seed)
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[rng.random((k, n)) >= dens] = 0
    return s


def test_layout_example():
    s = np.array([[0, 3], [-128, 0], [5, 127]], dtype=np.int8)
    w = words(encode(s))
    assert w.dtype == np.uint32
    assert w.tolist() == [
        MAGIC, 3 | 2 << 16, 4,
        0, 2, 4,
        1 | 0x80 << 16, 2 | 5 << 16,
        0 | 3 << 16, 2 | 127 << 16,
    ]
    assert encode(s)[:4] == b"TAWS"  # little-endian words
    assert to_bytes(w) == encode(s)


@settings(max_examples=150, deadline=None)
@given(sparse_matrices())
def test_round_trip(s):
    blob = encode(s)
    assert len(blob) == 4 * compress.blob_len(s.shape[1], int((s != 0).sum()))
    out = decode(blob, s.shape)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, s)


def test_torch_input():
    s = torch.tensor([[0, -1], [7, 0]], dtype=torch.int8)
    np.testing.assert_array_equal(decode(encode(s), (2, 2)), s.numpy())


@settings(max_examples=300, deadline=None)
@given(sparse_matrices(max_k=12, max_n=6), st.data())
def test_every_corruption_is_caught(s, data):
    """A corrupted blob is rejected, or it is the canonical encoding of another matrix."""
    w = [int(x) for x in words(encode(s))]
    kind = data.draw(st.sampled_from(["bit", "word", "drop", "append", "swap"]))
    if kind == "bit":
        i = data.draw(st.integers(0, len(w) - 1))
        w[i] ^= 1 << data.draw(st.integers(0, 31))
    elif kind == "word":
        i = data.draw(st.integers(0, len(w) - 1))
        w[i] = data.draw(st.integers(0, 2**32 - 1))
    elif kind == "drop":
        del w[data.draw(st.integers(0, len(w) - 1))]
    elif kind == "append":
        w.append(data.draw(st.integers(0, 2**32 - 1)))
    else:
        i = data.draw(st.integers(0, len(w) - 1))
        j = data.draw(st.integers(0, len(w) - 1))
        w[i], w[j] = w[j], w[i]
    blob = to_bytes(w)
    try:
        out = decode(blob, s.shape)
    except DecodeError as e:
        assert str(e) and e.codes
        return
    assert encode(out) == blob  # accepted only if it is a well-formed encoding


def _bad(s, mutate):
    w = [int(x) for x in words(encode(s))]
    mutate(w)
    return to_bytes(w)


S = np.array([[0, 3, 0], [-128, 0, 0], [5, 127, 0], [0, 0, 9]], dtype=np.int8)
E0 = 4 + 3  # first entry word


@pytest.mark.parametrize("mutate,codes,text", [
    (lambda w: w.__setitem__(0, 0x12345678), [1], "bad magic 0x12345678 (expected 0x53574154)"),
    (lambda w: w.__setitem__(1, 5 | 3 << 16), [2],
     "shape mismatch: header K=5, N=3, expected 4, 3"),
    (lambda w: w.__setitem__(3, 1), [3], "column pointers: ptr[0]=1 != 0"),
    (lambda w: w.__setitem__(4, 9), [3], "column pointers: decreasing at column 1"),
    (lambda w: w.__setitem__(2, 6), [3, 4],
     "column pointers: ptr[N]=5 != nnz=6; truncated: 12 words, layout needs 13"),
    (lambda w: w.__setitem__(E0, w[E0] & ~0xFFFF | 4), [5, 6],
     "index range: entry 0 has k=4 >= K=4; ordering: indices not strictly increasing in "
     "column 0 at entry 1"),
    (lambda w: w.__setitem__(E0 + 1, w[E0 + 1] & ~0xFFFF | 1), [6],
     "ordering: indices not strictly increasing in column 0 at entry 1"),
    (lambda w: w.__setitem__(E0, w[E0] & 0xFFFF), [7],
     "zero value or reserved bits: entry 0 = 0x00000001"),
    (lambda w: w.__setitem__(E0, w[E0] | 1 << 24), [7],
     "zero value or reserved bits: entry 0 = 0x01800001"),
    (lambda w: w.append(0), [0], "trailing data: 1 words past the end of the blob"),
    (lambda w: w.pop(), [4], "truncated: 11 words, layout needs 12"),
    (lambda w: w.__setitem__(slice(None), w[:2]), [4], "truncated: 2 words, header needs 3"),
    (lambda w: w.__setitem__(slice(None), w[:5]), [4], "truncated: 5 words, pointers need 7"),
])
def test_each_violation_named(mutate, codes, text):
    with pytest.raises(DecodeError) as ei:
        decode(_bad(S, mutate), S.shape)
    assert str(ei.value) == text
    assert ei.value.codes == codes


def _message(fn, *args):
    with pytest.raises(ValueError) as ei:
        fn(*args)
    return str(ei.value)


def test_odd_length_and_shape():
    assert _message(decode, encode(S)[:-1], S.shape) == \
        "truncated: blob length 47 not a multiple of 4"
    assert _message(decode, encode(S), (4, 4)) == \
        "shape mismatch: header K=4, N=3, expected 4, 4"
    assert _message(words, b"abc") == "blob length 3 is not a multiple of 4 bytes"


def test_several_violations_named_together():
    def mutate(w):
        w[E0] |= 1 << 24
        w[E0 + 1] = w[E0 + 1] & ~0xFFFF | 0x7FF
    with pytest.raises(DecodeError) as ei:
        decode(_bad(S, mutate), S.shape)
    assert ei.value.codes == [5, 7]
    assert str(ei.value) == ("index range: entry 1 has k=2047 >= K=4; zero value or reserved "
                             "bits: entry 0 = 0x01800001")


def test_encode_rejects():
    assert _message(encode, np.zeros(3, dtype=np.int8)) == \
        "encode: S must be 2-D, got shape (3,)"
    assert _message(encode, np.array([[200]])) == \
        "encode: values outside int8 range [-128, 127]"
    assert _message(encode, np.array([[0.5]])) == \
        "encode: S must hold integers, got dtype float64"
    assert _message(encode, np.zeros((1, 70000), dtype=np.int8)) == \
        "encode: K=1, N=70000: both must be <= 65535"
