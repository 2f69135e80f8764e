"""Packed t-bit cell streams against an exact big-integer reference of the documented layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightless_core import bitpack
from weightless_core.errors import InvalidInputError


def _reference_bytes(values: list[int], t: int) -> bytes:
    """Cell i at stream bits [i*t, (i+1)*t), stream bit j = bit j%8 of byte j//8."""
    stream = 0
    for i, v in enumerate(values):
        stream |= v << (i * t)
    return stream.to_bytes((len(values) * t + 7) // 8, "little")


@pytest.mark.parametrize("t", range(1, 33))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_round_trip_every_t(t: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, (1 << t) - 1), max_size=70))
    arr = np.array(values, dtype=np.uint32)
    words = bitpack.pack(arr, t)
    assert words.dtype == np.uint32
    assert words.size == bitpack.num_words(arr.size, t)
    assert words[-1] == 0  # the padding word
    raw = bitpack.words_to_bytes(words, arr.size, t)
    assert len(raw) == bitpack.packed_nbytes(arr.size, t)
    assert raw == _reference_bytes(values, t)
    np.testing.assert_array_equal(bitpack.unpack(words, arr.size, t), arr)
    back = bitpack.bytes_to_words(raw, arr.size, t)
    np.testing.assert_array_equal(back, words)


def test_hand_checked_toy_cases() -> None:
    # t=3: 1 = 001, 2 = 010, 3 = 011 -> stream bits (LSB first) 100 010 110 -> 0xD1, 0x00.
    words = bitpack.pack(np.array([1, 2, 3]), 3)
    assert bitpack.words_to_bytes(words, 3, 3) == b"\xd1\x00"
    words = bitpack.pack(np.array([0xDEADBEEF, 1]), 32)
    assert bitpack.words_to_bytes(words, 2, 32) == b"\xef\xbe\xad\xde\x01\x00\x00\x00"
    words = bitpack.pack(np.array([1, 0, 1, 1, 0, 0, 0, 1, 1]), 1)
    assert bitpack.words_to_bytes(words, 9, 1) == b"\x8d\x01"
    assert bitpack.packed_nbytes(0, 7) == 0
    assert bitpack.words_to_bytes(bitpack.pack(np.array([], dtype=np.uint32), 7), 0, 7) == b""


def test_read_cell_matches_unpack() -> None:
    rng = np.random.default_rng(0)
    for t in (1, 5, 7, 13, 31, 32):
        vals = rng.integers(0, 1 << t, size=101, dtype=np.uint64).astype(np.uint32)
        words = bitpack.pack(vals, t)
        tmask = np.uint64((1 << t) - 1)
        got = [int(bitpack.read_cell(words, np.uint64(c), np.uint64(t), tmask)) for c in range(101)]
        assert got == [int(v) for v in vals]


@pytest.mark.parametrize("t", [0, 33, -1])
def test_bad_t(t: int) -> None:
    with pytest.raises(InvalidInputError, match="t"):
        bitpack.pack(np.array([0]), t)
    with pytest.raises(InvalidInputError, match="t"):
        bitpack.unpack(np.zeros(2, dtype=np.uint32), 1, t)


def test_bad_values_and_lengths() -> None:
    with pytest.raises(InvalidInputError, match=r"\[0, 2\*\*3\)"):
        bitpack.pack(np.array([8]), 3)
    with pytest.raises(InvalidInputError, match=r"\[0, 2\*\*3\)"):
        bitpack.pack(np.array([-1]), 3)
    with pytest.raises(InvalidInputError, match="integers"):
        bitpack.pack(np.array([1.0]), 3)
    with pytest.raises(InvalidInputError, match="bytes"):
        bitpack.bytes_to_words(b"\x00\x00\x00", 3, 3)
