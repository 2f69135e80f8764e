"""Dense packing of t-bit cells (1 <= t <= 32) into a little-endian bit stream.

Cell ``i`` occupies stream bits ``[i*t, (i+1)*t)``; stream bit ``j`` is bit ``j % 8`` of byte
``j // 8``. In memory the stream is held as uint32 words plus one zero word of padding, so any
cell is read with two word loads and a shift (see ``read_cell``), without unpacking the table.
"""

from __future__ import annotations

import numpy as np

from weightless_core._jit import inline, njit
from weightless_core.errors import InvalidInputError

MAX_T = 32


def _check_t(t: int) -> None:
    if not 1 <= t <= MAX_T:
        raise InvalidInputError(f"t (bits per cell) must be in 1..{MAX_T}, got {t}")


def packed_nbytes(num_cells: int, t: int) -> int:
    """Bytes of the packed stream of ``num_cells`` cells of ``t`` bits."""
    return (num_cells * t + 7) // 8


def num_words(num_cells: int, t: int) -> int:
    """uint32 words that hold the stream, plus one word of padding for two-word reads."""
    return (num_cells * t + 31) // 32 + 1


@inline
def read_cell(words: np.ndarray, cell: np.uint64, t: np.uint64, tmask: np.uint64) -> np.uint64:
    p = cell * t
    w = p >> np.uint64(5)
    lo = np.uint64(words[w])
    hi = np.uint64(words[w + np.uint64(1)])
    return ((lo | (hi << np.uint64(32))) >> (p & np.uint64(31))) & tmask


@njit()
def _pack(values: np.ndarray, t: int, out: np.ndarray) -> None:
    tt = np.uint64(t)
    for i in range(values.size):
        p = np.uint64(i) * tt
        w = p >> np.uint64(5)
        off = p & np.uint64(31)
        v = np.uint64(values[i]) << off
        out[w] |= np.uint32(v & np.uint64(0xFFFFFFFF))
        out[w + np.uint64(1)] |= np.uint32(v >> np.uint64(32))


def pack(values: np.ndarray, t: int) -> np.ndarray:
    """Pack ``values`` (1-D, each < 2**t) into padded uint32 words."""
    _check_t(t)
    v = np.ascontiguousarray(values).ravel()
    if v.size and (v.dtype.kind not in "iub" or int(v.min()) < 0 or int(v.max()) >> t):
        raise InvalidInputError(f"packed values must be integers in [0, 2**{t})")
    out = np.zeros(num_words(v.size, t), dtype=np.uint32)
    _pack(v.astype(np.uint32, copy=False), np.int64(t), out)
    return out


def unpack(words: np.ndarray, num_cells: int, t: int) -> np.ndarray:
    """Inverse of ``pack`` (vectorised numpy; used by references and tests)."""
    _check_t(t)
    p = np.arange(num_cells, dtype=np.uint64) * np.uint64(t)
    w = (p >> np.uint64(5)).astype(np.int64)
    pair = words[w].astype(np.uint64) | (words[w + 1].astype(np.uint64) << np.uint64(32))
    return ((pair >> (p & np.uint64(31))) & np.uint64((1 << t) - 1)).astype(np.uint32)


def words_to_bytes(words: np.ndarray, num_cells: int, t: int) -> bytes:
    """The stream exactly as stored in a file: ``packed_nbytes`` bytes, little-endian."""
    return words.astype("<u4", copy=False).tobytes()[: packed_nbytes(num_cells, t)]


def bytes_to_words(data: bytes, num_cells: int, t: int) -> np.ndarray:
    """Padded uint32 words from a stored stream (``len(data)`` must be ``packed_nbytes``)."""
    _check_t(t)
    if len(data) != packed_nbytes(num_cells, t):
        raise InvalidInputError(
            f"a stream of {num_cells} cells of {t} bits is {packed_nbytes(num_cells, t)} bytes, "
            f"got {len(data)}"
        )
    n = num_words(num_cells, t)
    buf = bytearray(n * 4)
    buf[: len(data)] = data
    return np.frombuffer(bytes(buf), dtype="<u4").astype(np.uint32)
