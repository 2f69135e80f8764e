"""Canonical Huffman coding for small alphabets (at most ``MAX_SYMBOLS`` symbols).

Only code *lengths* are ever stored: the codes follow from them by the canonical rule of DEFLATE
(RFC 1951, 3.2.2): used symbols sorted by (length, symbol) get consecutive codes, shifted left
whenever the length grows. Codes are written most significant bit first into an MSB-first bit
stream (stream bit ``j`` is bit ``7 - j % 8`` of byte ``j // 8``), padded with 0 bits to a whole
byte. Lengths are limited to ``MAX_CODE_LENGTH`` bits so every code fits a machine word; an
optimal tree longer than that (only for millions of symbols with a Fibonacci-like skew) is
flattened by halving the counts until it fits.
"""

from __future__ import annotations

import heapq
from fractions import Fraction

import numpy as np

from weightless_core._jit import njit
from weightless_core.errors import FormatError, InvalidInputError

MAX_SYMBOLS = 4096
MAX_CODE_LENGTH = 32
_CHUNK = 1 << 20  # symbols encoded at a time


def code_lengths(counts: object) -> np.ndarray:
    """Optimal (Huffman) code lengths, uint8, for symbol ``i`` occurring ``counts[i]`` times.

    Unused symbols get 0; a lone used symbol gets 1 (a code needs at least one bit). Ties are
    broken by symbol index (leaves) and then creation order (merged nodes), so equal counts
    always give equal lengths.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or not 1 <= c.size <= MAX_SYMBOLS:
        raise InvalidInputError(
            f"counts must be a 1-D array of 1..{MAX_SYMBOLS} entries, got shape {c.shape}"
        )
    if c.dtype.kind not in "iu" or (c.size and int(c.min()) < 0):
        raise InvalidInputError("counts must be non-negative integers")
    weights = [int(v) for v in c]
    lengths = _tree_lengths(weights)
    while lengths and max(lengths.values()) > MAX_CODE_LENGTH:
        weights = [(w + 1) // 2 for w in weights]  # used symbols stay >= 1
        lengths = _tree_lengths(weights)
    out = np.zeros(c.size, dtype=np.uint8)
    for symbol, length in lengths.items():
        out[symbol] = length
    return out


def _tree_lengths(weights: list[int]) -> dict[int, int]:
    """symbol -> depth in the Huffman tree of the non-zero ``weights``."""
    used = [s for s, w in enumerate(weights) if w > 0]
    if len(used) <= 1:
        return {s: 1 for s in used}
    n = len(weights)
    heap = [(weights[s], s) for s in used]  # (weight, node id); leaves are ids 0..n-1
    heapq.heapify(heap)
    parent: dict[int, int] = {}
    next_id = n
    while len(heap) > 1:
        wa, a = heapq.heappop(heap)
        wb, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (wa + wb, next_id))
        next_id += 1
    # Merged nodes get increasing ids, so each parent's depth is known before its children's.
    depth = {next_id - 1: 0}
    for node in range(next_id - 2, n - 1, -1):
        if node in parent:
            depth[node] = depth[parent[node]] + 1
    return {s: depth[parent[s]] + 1 for s in used}


def kraft_sum(lengths: object) -> Fraction:
    """``sum(2**-l)`` over the non-zero lengths (each <= 255), exactly."""
    return Fraction(_kraft_numerator(_as_lengths(lengths, limit=255)), 1 << 255)


def is_prefix_free(lengths: object) -> bool:
    """Whether a prefix code with these lengths exists: the Kraft inequality, sum <= 1.

    Canonical codes of such lengths are prefix-free by construction.
    """
    return _kraft_numerator(_as_lengths(lengths, limit=255)) <= 1 << 255


def _kraft_numerator(lens: np.ndarray) -> int:
    per_length = np.bincount(lens, minlength=256)
    return sum(int(per_length[bits]) << (255 - bits) for bits in range(1, 256))


def canonical_codes(lengths: object) -> np.ndarray:
    """The canonical code of each symbol (uint64; 0 where the length is 0)."""
    lens = _valid_lengths(lengths)
    first, _, _, order = _canonical_tables(lens)
    codes = np.zeros(lens.size, dtype=np.uint64)
    if order.size:
        sorted_lens = lens[order].astype(np.int64)
        group_start = np.searchsorted(sorted_lens, sorted_lens, side="left")
        rank = np.arange(order.size) - group_start
        codes[order] = (first[sorted_lens] + rank).astype(np.uint64)
    return codes


def encode(symbols: object, lengths: object) -> tuple[bytes, int]:
    """The bit stream of ``symbols`` (integers < ``len(lengths)``) and its length in bits.

    Vectorised: each code is placed in a 40-bit window at its byte, and the windows' bytes are
    summed per output byte (codes occupy disjoint bits, so sums never carry).
    """
    lens = _valid_lengths(lengths)
    sym = np.asarray(symbols)
    if sym.dtype.kind not in "iu":
        raise InvalidInputError(f"symbols must be integers, got dtype {sym.dtype}")
    sym = sym.ravel()
    if sym.size == 0:
        return b"", 0
    if int(sym.min()) < 0 or int(sym.max()) >= lens.size:
        raise InvalidInputError(f"symbols must lie in [0, {lens.size})")
    counts = np.zeros(lens.size, dtype=np.int64)
    for at in range(0, sym.size, _CHUNK):
        counts += np.bincount(sym[at : at + _CHUNK].astype(np.int64), minlength=lens.size)
    if (missing := np.flatnonzero((counts > 0) & (lens == 0))).size:
        raise InvalidInputError(
            f"symbol {int(missing[0])} occurs but has no code (its length is 0)"
        )
    nbits = int(counts @ lens.astype(np.int64))
    nbytes = (nbits + 7) // 8
    codes = canonical_codes(lens)
    out = np.zeros(nbytes + 5, dtype=np.int64)
    offset = 0  # bits written before this chunk
    for at in range(0, sym.size, _CHUNK):  # chunks bound the temporaries on 100M-entry streams
        part_sym = sym[at : at + _CHUNK].astype(np.int64)
        sym_lens = lens[part_sym].astype(np.int64)
        ends = np.cumsum(sym_lens) + offset
        starts = ends - sym_lens
        offset = int(ends[-1])
        window = codes[part_sym] << (40 - (starts & 7) - sym_lens).astype(np.uint64)
        first_byte = starts >> 3
        base = int(first_byte[0])
        span = int(first_byte[-1]) - base + 5
        for k in range(5):
            part = ((window >> np.uint64(32 - 8 * k)) & np.uint64(0xFF)).astype(np.float64)
            summed = np.bincount(first_byte - base + k, weights=part, minlength=span)
            out[base : base + span] += summed.astype(np.int64)
    return out[:nbytes].astype(np.uint8).tobytes(), nbits


def decode(data: bytes | memoryview, nbits: int, lengths: object, count: int) -> np.ndarray:
    """Decode ``count`` symbols (int32) from a stream of exactly ``nbits`` bits.

    The stream must be what ``encode`` writes: ``ceil(nbits / 8)`` bytes, zero padding bits,
    and exactly ``nbits`` bits consumed by the ``count`` codes. Anything else (a code that is not
    in the table, a stream that ends early or has bits left over) raises ``FormatError``.
    """
    lens = _valid_lengths(lengths)
    if not (isinstance(nbits, int | np.integer) and isinstance(count, int | np.integer)):
        raise InvalidInputError("nbits and count must be integers")
    nbits, count = int(nbits), int(count)
    if nbits < 0 or count < 0:
        raise InvalidInputError(f"nbits and count must be >= 0, got {nbits} and {count}")
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != (nbits + 7) // 8:
        raise FormatError(f"a stream of {nbits} bits is {(nbits + 7) // 8} bytes, got {raw.size}")
    if nbits % 8 and raw[-1] & ((1 << (8 - nbits % 8)) - 1):
        raise FormatError("padding bits after the last code are not 0")
    used = lens[lens > 0]
    if count == 0 or used.size == 0:
        if count or nbits:
            raise FormatError(f"{count} symbols cannot fill {nbits} bits with these lengths")
        return np.zeros(0, dtype=np.int32)
    if not count * int(used.min()) <= nbits <= count * int(used.max()):
        raise FormatError(
            f"{count} codes of {int(used.min())}..{int(used.max())} bits cannot fill {nbits} bits"
        )
    first, per_length, offset, order = _canonical_tables(lens)
    out = np.empty(count, dtype=np.int32)
    status = _decode_kernel(
        raw,
        np.int64(nbits),
        first,
        per_length,
        offset,
        order.astype(np.int32),
        np.int64(int(used.max())),
        out,
    )
    if status == -1:
        raise FormatError("the stream holds a bit pattern that is no code of the table")
    if status == -2:
        raise FormatError(f"the stream of {nbits} bits ends before its {count} codes")
    if status != nbits:
        raise FormatError(f"{nbits - status} bits are left over after the {count} codes")
    return out


@njit()
def _decode_kernel(
    data: np.ndarray,
    nbits: np.int64,
    first: np.ndarray,
    per_length: np.ndarray,
    offset: np.ndarray,
    symbols: np.ndarray,
    max_len: np.int64,
    out: np.ndarray,
) -> np.int64:
    """Bit-serial canonical decoding; returns the bits consumed, -1 (bad code) or -2 (cut)."""
    pos = np.int64(0)
    for i in range(out.size):
        code = np.int64(0)
        length = np.int64(0)
        while True:
            if pos >= nbits:
                return np.int64(-2)
            bit = (np.int64(data[pos >> 3]) >> (7 - (pos & 7))) & 1
            pos += 1
            code = (code << 1) | bit
            length += 1
            index = code - first[length]
            if 0 <= index < per_length[length]:
                out[i] = symbols[offset[length] + index]
                break
            if length >= max_len:
                return np.int64(-1)
    return pos


def _canonical_tables(lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first code, codes per length, index of each length's first symbol, symbols sorted)."""
    per_length = np.bincount(lens, minlength=MAX_CODE_LENGTH + 1).astype(np.int64)
    per_length[0] = 0
    first = np.zeros(MAX_CODE_LENGTH + 1, dtype=np.int64)
    for bits in range(2, MAX_CODE_LENGTH + 1):
        first[bits] = (first[bits - 1] + per_length[bits - 1]) << 1
    offset = np.concatenate([[0], np.cumsum(per_length)[:-1]]).astype(np.int64)
    used = np.flatnonzero(lens)
    order = used[np.argsort(lens[used], kind="stable")]
    return first, per_length, offset, order


def _as_lengths(lengths: object, *, limit: int) -> np.ndarray:
    lens = np.asarray(lengths)
    if lens.ndim != 1 or not 1 <= lens.size <= MAX_SYMBOLS:
        raise InvalidInputError(
            f"code lengths must be a 1-D array of 1..{MAX_SYMBOLS} entries, got shape {lens.shape}"
        )
    if lens.dtype.kind not in "iu":
        raise InvalidInputError(f"code lengths must be integers, got dtype {lens.dtype}")
    if int(lens.min()) < 0 or int(lens.max()) > limit:
        raise InvalidInputError(f"code lengths must lie in 0..{limit}")
    return lens.astype(np.int64)


def _valid_lengths(lengths: object) -> np.ndarray:
    lens = _as_lengths(lengths, limit=MAX_CODE_LENGTH)
    if _kraft_numerator(lens) > 1 << 255:
        raise InvalidInputError("code lengths break the Kraft inequality: no prefix code has them")
    return lens
