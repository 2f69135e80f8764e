"""The table unpacked to one byte (or two) per cell, for dense decodes.

A dense decode queries every position of a layer, so it reads the table tens of times per
cell. Reading a cell from the packed stream takes two word loads, a shift and a mask; from an
unpacked copy it is one narrow load. Unpacking costs one pass over the table (a few
milliseconds for a 5 M-cell table, a fraction of a percent of the decode), and the copy is
about the size of the packed table for the t of real layers (6 to 12 bits), so the random
reads stay in the same cache level. Tables of more than 16 bits per cell or 2**32 cells keep
the packed path (``narrow_cells`` returns None).

``cellxor.scan`` reads either form, chosen by the table's dtype.
"""

from __future__ import annotations

import numpy as np

from weightless_core._jit import njit, prange
from weightless_core.errors import InvalidInputError

CHUNK = 4096
"""Cells per parallel task of the unpacking."""

MAX_NARROW_T = 16
MAX_NARROW_CELLS = 1 << 32  # larger tables keep the packed stream


@njit(parallel=True)
def _unpack(words: np.ndarray, t: np.int64, out: np.ndarray) -> None:
    tt = np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    n = out.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            p = np.uint64(i) * tt
            w = p >> np.uint64(5)
            pair = np.uint64(words[w]) | (np.uint64(words[w + np.uint64(1)]) << np.uint64(32))
            out[i] = (pair >> (p & np.uint64(31))) & tmask


def narrow_cells(words: np.ndarray, num_cells: int, t: int) -> np.ndarray | None:
    """The cells as uint8 (t <= 8) or uint16 (t <= 16), or None when the packed path is kept."""
    if t > MAX_NARROW_T or num_cells > MAX_NARROW_CELLS:
        return None
    out = np.empty(num_cells, dtype=np.uint8 if t <= 8 else np.uint16)
    _unpack(words, np.int64(t), out)
    return out


def decode_table(codebook: np.ndarray) -> np.ndarray:
    """The codebook followed by one 0.0: a decode kernel maps a result past the codebook to
    that last entry, with no data-dependent branch."""
    return np.append(np.asarray(codebook, dtype=np.float32).ravel(), np.float32(0.0))


def check_dense_out(out: object) -> None:
    """Refuse an ``out`` a decode kernel cannot write in place."""
    if not (
        isinstance(out, np.ndarray)
        and out.ndim == 1
        and out.dtype == np.float32
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise InvalidInputError("out must be a writeable, contiguous 1-D float32 array")
