"""Canonical Huffman coding: optimal lengths, prefix-free codes, exact streams, safe decoding."""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightless_core import _jit
from weightless_core.baselines import huffman
from weightless_core.errors import FormatError, InvalidInputError

# ----------------------------------------------------------------------------- references


def _code_strings(lengths: np.ndarray) -> dict[int, str]:
    codes = huffman.canonical_codes(lengths)
    return {s: format(int(codes[s]), f"0{int(n)}b") for s, n in enumerate(lengths) if n}


def _assert_prefix_free(lengths: np.ndarray) -> None:
    """No code is a prefix of another, checked on the code strings themselves."""
    words = sorted(_code_strings(lengths).values())
    assert len(set(words)) == len(words)
    for a, b in itertools.pairwise(words):  # a prefix sorts right before its extensions
        assert not b.startswith(a), (a, b)
    for word, length in zip(_code_strings(lengths).values(), lengths[lengths > 0], strict=True):
        assert len(word) == length


def _optimal_cost(counts: list[int]) -> int:
    """Cost of an optimal prefix code: the sum of all merged weights (an independent check)."""
    heap = [c for c in counts if c > 0]
    if len(heap) == 1:
        return heap[0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


def _reference_stream(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """The documented layout: codes MSB first, back to back, zero-padded to a byte."""
    strings = _code_strings(lengths)
    bits = "".join(strings[int(s)] for s in symbols)
    if not bits:
        return b"", 0
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big"), len(bits)


# ----------------------------------------------------------------------------- lengths


def test_textbook_distribution():
    # CLRS 16.3: a:45 b:13 c:12 d:16 e:9 f:5 -> 224 bits, codes 0 101 100 111 1101 1100 there;
    # the canonical codes differ in labelling but not in length.
    lengths = huffman.code_lengths(np.array([45, 13, 12, 16, 9, 5]))
    assert lengths.dtype == np.uint8
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    assert int(np.dot(lengths, [45, 13, 12, 16, 9, 5])) == 224
    assert _code_strings(lengths) == {0: "0", 1: "100", 2: "101", 3: "110", 4: "1110", 5: "1111"}
    assert huffman.code_lengths([15, 7, 6, 6, 5]).tolist() == [1, 3, 3, 3, 3]  # 87 bits


def test_edge_cases_and_ties():
    assert huffman.code_lengths([0, 0, 7, 0]).tolist() == [0, 0, 1, 0]  # lone symbol: 1 bit
    assert huffman.code_lengths([0, 0, 0]).tolist() == [0, 0, 0]
    assert huffman.code_lengths([3, 0, 3]).tolist() == [1, 0, 1]
    # Ties go to the lower symbol first: 0 and 1 merge, 2 stays near the root.
    assert huffman.code_lengths([1, 1, 1]).tolist() == [2, 2, 1]
    assert huffman.code_lengths([5] * 8).tolist() == [3] * 8
    assert huffman.code_lengths(np.array([2**62, 1, 1], dtype=np.uint64)).tolist() == [1, 2, 2]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=300))
def test_lengths_are_optimal_and_prefix_free(counts: list[int]) -> None:
    lengths = huffman.code_lengths(np.array(counts))
    used = [c > 0 for c in counts]
    assert (lengths > 0).tolist() == used
    assert huffman.is_prefix_free(lengths)
    _assert_prefix_free(lengths)
    if sum(used) >= 2:
        assert huffman.kraft_sum(lengths) == 1  # Huffman codes are complete
        cost = int(np.dot(lengths.astype(np.int64), counts))
        assert cost == _optimal_cost(counts)
        total = sum(counts)
        entropy = -sum(c / total * math.log2(c / total) for c in counts if c)
        assert entropy - 1e-9 <= cost / total < entropy + 1
    assert huffman.code_lengths(np.array(counts)).tolist() == lengths.tolist()  # deterministic


def test_lengths_are_limited():
    fib = [1, 1]
    while len(fib) < 60:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(np.array(fib, dtype=np.int64))
    assert int(lengths.max()) <= huffman.MAX_CODE_LENGTH  # unlimited Huffman would need 59
    assert (np.diff(lengths.astype(int)) <= 0).all()  # commoner symbols still get shorter codes
    assert huffman.kraft_sum(lengths) <= 1
    _assert_prefix_free(lengths)
    symbols = np.repeat(np.arange(60), 3)
    data, nbits = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(data, nbits, lengths, symbols.size), symbols)


def test_kraft_and_prefix_checks():
    assert huffman.kraft_sum([1, 1]) == 1 and huffman.is_prefix_free([1, 1])
    assert not huffman.is_prefix_free([1, 1, 1])
    assert huffman.is_prefix_free([0, 0]) and huffman.kraft_sum([0]) == 0
    assert huffman.is_prefix_free([1, 2, 0])  # incomplete codes are still prefix-free
    assert huffman.kraft_sum(np.array([255, 255], dtype=np.uint8)) == 2 * 2**-255
    with pytest.raises(InvalidInputError):
        huffman.is_prefix_free([256])


@pytest.mark.parametrize(
    "counts",
    [[-1, 2], [1.5, 2.0], [[1, 2]], [], [1] * (huffman.MAX_SYMBOLS + 1)],
    ids=["negative", "float", "2-D", "empty", "too many"],
)
def test_bad_counts(counts):
    with pytest.raises(InvalidInputError):
        huffman.code_lengths(np.array(counts))


def test_bad_lengths():
    with pytest.raises(InvalidInputError, match="Kraft"):
        huffman.canonical_codes([1, 1, 1])
    with pytest.raises(InvalidInputError, match=r"0\.\.32"):
        huffman.canonical_codes([33, 1])
    with pytest.raises(InvalidInputError):
        huffman.canonical_codes([1.0, 1.0])
    with pytest.raises(InvalidInputError, match="no code"):
        huffman.encode([0, 2], [1, 1, 0])
    with pytest.raises(InvalidInputError, match="lie in"):
        huffman.encode([3], [1, 1, 0])
    with pytest.raises(InvalidInputError, match="integers"):
        huffman.encode([0.0], [1, 1])
    with pytest.raises(InvalidInputError):
        huffman.decode(b"", 0, [1, 1], -1)


# ----------------------------------------------------------------------------- streams


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_round_trip_matches_the_reference_layout(data: st.DataObject) -> None:
    alphabet = data.draw(st.integers(1, 300))
    symbols = np.array(
        data.draw(st.lists(st.integers(0, alphabet - 1), max_size=400)), dtype=np.int64
    )
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    raw, nbits = huffman.encode(symbols, lengths)
    assert (raw, nbits) == _reference_stream(symbols, lengths)
    assert nbits == int(lengths[symbols].astype(np.int64).sum())
    assert len(raw) == (nbits + 7) // 8
    back = huffman.decode(raw, nbits, lengths, symbols.size)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, symbols)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_a_stream_encoded_in_chunks_is_the_same_stream(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long streams are encoded a chunk at a time (bounded memory): codes straddling a chunk's
    last byte, and uint64 symbols, give exactly the one-piece stream."""
    rng = np.random.default_rng(5)
    symbols = np.minimum(rng.geometric(0.3, size=1000), 40).astype(np.uint64)
    lengths = huffman.code_lengths(np.bincount(symbols.astype(np.int64), minlength=41))
    whole = huffman.encode(symbols, lengths)
    assert whole == _reference_stream(symbols.astype(np.int64), lengths)
    monkeypatch.setattr(huffman, "_CHUNK", chunk)
    assert huffman.encode(symbols, lengths) == whole


def test_single_symbol_stream():
    lengths = huffman.code_lengths([0, 9])
    raw, nbits = huffman.encode(np.ones(9, dtype=np.int64), lengths)
    assert (raw, nbits) == (b"\x00\x00", 9)
    assert huffman.decode(raw, nbits, lengths, 9).tolist() == [1] * 9
    assert huffman.encode(np.array([], dtype=np.int64), lengths) == (b"", 0)
    assert huffman.decode(b"", 0, lengths, 0).size == 0


def test_many_symbols():
    rng = np.random.default_rng(1)
    n = huffman.MAX_SYMBOLS
    symbols = np.concatenate([np.arange(n), rng.zipf(1.3, size=20_000) % n])
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=n))
    assert (lengths > 0).all()
    raw, nbits = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(raw, nbits, lengths, symbols.size), symbols)


@pytest.mark.skipif(not _jit.ENABLED, reason="a million symbols is slow uncompiled")
def test_a_million_symbols():
    rng = np.random.default_rng(2)
    symbols = np.minimum(rng.geometric(0.2, size=1_000_000), 256)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=257))
    raw, nbits = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(raw, nbits, lengths, symbols.size), symbols)


@pytest.mark.skipif(not _jit.ENABLED, reason="numba is not available: nothing to compare with")
def test_compiled_and_plain_kernels_agree():
    lengths = huffman.code_lengths([5, 1, 1, 9, 0, 3])
    symbols = np.array([0, 3, 3, 1, 2, 5, 0, 3])
    raw, nbits = huffman.encode(symbols, lengths)
    lens = lengths.astype(np.int64)
    first, per_length, offset, order = huffman._canonical_tables(lens)
    args = (np.frombuffer(raw, dtype=np.uint8), np.int64(nbits), first, per_length, offset)
    outs = []
    for kernel in (huffman._decode_kernel, huffman._decode_kernel.py_func):
        out = np.empty(symbols.size, dtype=np.int32)
        assert kernel(*args, order.astype(np.int32), np.int64(lens.max()), out) == nbits
        outs.append(out)
    np.testing.assert_array_equal(outs[0], symbols)
    np.testing.assert_array_equal(outs[1], symbols)


# ----------------------------------------------------------------------------- corrupt streams


def test_corrupt_streams_raise_format_error():
    lengths = np.array([1, 2, 3, 3], dtype=np.uint8)  # 0, 10, 110, 111
    raw, nbits = huffman.encode([1, 2, 3, 0], lengths)  # 10 110 111 0 -> 9 bits
    assert (raw, nbits) == (bytes([0b10110111, 0]), 9)
    cases = {
        "ends early": (raw, 9, 5),
        "bits left over": (raw, 9, 3),
        "short data": (raw[:1], 9, 4),
        "long data": (raw + b"\x00", 9, 4),
        "padding bit": (bytes([0b10110111, 0b01]), 9, 4),
        "count beyond the bits": (raw, 9, 10),
        "huge count": (raw, 9, 2**62),
        "no bits for a symbol": (b"", 0, 1),
    }
    for case, (data, bits, count) in cases.items():
        with pytest.raises(FormatError):
            huffman.decode(data, bits, lengths, count)
            pytest.fail(case)
    incomplete = np.array([1, 2, 0], dtype=np.uint8)  # 0, 10: the pattern 11 is no code
    with pytest.raises(FormatError, match="no code"):
        huffman.decode(bytes([0b01100000]), 4, incomplete, 3)
    with pytest.raises(FormatError):
        huffman.decode(b"", 0, np.zeros(3, dtype=np.uint8), 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 400), st.integers(0, 400), st.data())
def test_garbage_never_escapes_as_another_error(
    data: bytes, nbits: int, count: int, more: st.DataObject
) -> None:
    lengths = np.array(more.draw(st.lists(st.integers(0, 6), min_size=1, max_size=12)))
    if not huffman.is_prefix_free(lengths):
        return
    try:
        out = huffman.decode(data, nbits, lengths, count)
    except FormatError:
        return
    assert out.size == count
    assert huffman.encode(out, lengths) == (data, nbits)  # what decodes is what encodes
