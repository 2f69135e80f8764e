"""Standard ribbon retrieval (Dillinger and Walzer 2021), w = 128, with a t-bit mask.

Same contract as the Bloomier filter and binary fuse (a stored key queries to its value, any
other key to uniform t bits), in about 1.01-1.03 cells per key at the 1k-50k keys of a pruned
LeNet layer, where binary fuse needs 1.2-1.3: the table solves a linear system over GF(2)
instead of peeling a hypergraph. Each key is one equation over a window of 128 consecutive cells
starting at a hashed position, so the system is banded and Gaussian elimination on the fly
(each new row is reduced against the rows already placed, then stored at its leading column)
builds it in ``O(n * w)`` word operations.

Layout (``docs/format.md`` is normative): ``m >= 128`` cells of ``t`` bits, ``X[c]`` cell ``c``.
For key ``k`` with ``h = hash64(seed, k)``:

* start ``s = ((h >> 32) * (m - 127)) >> 32`` (``0 <= s <= m - 128``),
* coefficients ``lo = mix64(h) | 1`` and ``hi = mix64(mix64(h))``: the 128-bit row ``hi:lo``,
  bit ``j`` covering cell ``s + j``,
* mask ``M = h & (2**t - 1)``,
* query ``q(k) = M ^ XOR of X[s + j] over the set bits j of hi:lo``.

Construction may fail (two keys' rows end up dependent with different values); it then retries
with a derived seed and, every two attempts, a table 1-2 % larger (``SIZE_STEPS``), so the
writer finds close to the smallest table that solves. Cells no row leads are free; they are 0.

Decoding reads the table as ``t`` bit planes of 64-bit words (cells ``64i .. 64i+63`` of plane
``b`` in word ``i``), so a query is, per plane, two 128-bit windows ANDed with the row and a
parity: ``t`` times a few word operations, instead of 64 cell reads on average.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from weightless_core import bitpack
from weightless_core._jit import inline, njit, prange
from weightless_core.errors import InvalidInputError
from weightless_core.retrieval.base import RetrievalStructure, mix

if TYPE_CHECKING:
    import torch

    from weightless_core.retrieval.torch_decode import Scratch, TorchLookup

WIDTH = 128
MIN_CELLS = WIDTH
MAX_CELLS = 1 << 32  # (h >> 32) * (m - 127) stays below 2**64
SIZE_STEPS = (1.01, 1.02, 1.03, 1.05, 1.08, 1.12, 1.2, 1.35, 1.6, 2.0)
"""Cells per key tried in turn, two seeds each: at 1k-50k keys about half the first seeds
solve at 1.01 and nearly all at 1.02-1.03 (``benchmarks/bench_structures.py``)."""

_CHUNK = 4096
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_TABLE = np.array(
    [0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22,
     45, 39, 33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23,
     11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6],
    dtype=np.int64,
)  # fmt: skip


def size_for(n: int, cells_per_key: float) -> int:
    """Table cells for ``n`` keys at ``cells_per_key``: at least ``MIN_CELLS``."""
    return max(MIN_CELLS, math.ceil(cells_per_key * n))


# ------------------------------------------------------------------------------ hashing


@inline
def _start(h: np.uint64, spots: np.uint64) -> np.uint64:
    return ((h >> np.uint64(32)) * spots) >> np.uint64(32)


@inline
def _row(h: np.uint64) -> tuple[np.uint64, np.uint64]:
    g = mix(h)
    return g | np.uint64(1), mix(g)


@inline
def _ctz(x: np.uint64) -> np.int64:
    """Trailing zeros of a non-zero word (de Bruijn multiplication)."""
    low = x & (~x + np.uint64(1))
    return _DEBRUIJN_TABLE[(low * _DEBRUIJN) >> np.uint64(58)]


@inline
def _parity(x: np.uint64) -> np.uint64:
    x ^= x >> np.uint64(32)
    x ^= x >> np.uint64(16)
    x ^= x >> np.uint64(8)
    x ^= x >> np.uint64(4)
    return (np.uint64(0x6996) >> (x & np.uint64(15))) & np.uint64(1)


@inline
def _window(plane_lo: np.uint64, plane_mid: np.uint64, off: np.uint64) -> np.uint64:
    """64 plane bits from bit ``off`` of the 128-bit ``plane_mid:plane_lo`` (``off < 64``)."""
    if off == np.uint64(0):
        return plane_lo
    return (plane_lo >> off) | (plane_mid << (np.uint64(64) - off))


@inline
def _query_one(h: np.uint64, planes, spots: np.uint64, t: np.int64) -> np.uint64:
    s = _start(h, spots)
    lo, hi = _row(h)
    wi = np.int64(s >> np.uint64(6))
    off = s & np.uint64(63)
    acc = np.uint64(0)
    for b in range(t):
        a0 = planes[wi, b]
        a1 = planes[wi + 1, b]
        a2 = planes[wi + 2, b]
        x = (_window(a0, a1, off) & lo) ^ (_window(a1, a2, off) & hi)
        acc |= _parity(x) << np.uint64(b)
    return acc ^ (h & ((np.uint64(1) << np.uint64(t)) - np.uint64(1)))


# ------------------------------------------------------------------------------ queries


@njit(parallel=True)
def _query_kernel(keys, planes, sk: np.uint64, spots: np.int64, t: np.int64, out) -> None:
    sp = np.uint64(spots)
    n = keys.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            out[i] = np.uint32(_query_one(mix(np.uint64(keys[i]) + sk), planes, sp, t))


@njit(parallel=True)
def _decode_kernel(out, planes, sk: np.uint64, spots: np.int64, t: np.int64, table) -> None:
    # ``table`` is the codebook followed by 0.0; a result past the codebook selects the 0.0.
    sp = np.uint64(spots)
    last = np.uint64(table.size - 1)
    n = out.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            q = _query_one(mix(np.uint64(i) + sk), planes, sp, t)
            out[i] = table[min(q, last)]


@njit(parallel=True)
def _count_kernel(pruned, planes, sk: np.uint64, spots: np.int64, t: np.int64, limit) -> int:
    sp = np.uint64(spots)
    n = pruned.size
    total = 0
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        hits = 0
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            if pruned[i]:
                hits += _query_one(mix(np.uint64(i) + sk), planes, sp, t) < limit
        total += hits
    return total


@njit()
def _to_planes(cells, t: np.int64, planes) -> None:
    """Bit ``b`` of cell ``c`` into bit ``c % 64`` of ``planes[c // 64, b]`` (zeroed)."""
    for c in range(cells.size):
        v = np.uint64(cells[c])
        w = c >> 6
        bit = np.uint64(1) << np.uint64(c & 63)
        for b in range(t):
            if (v >> np.uint64(b)) & np.uint64(1):
                planes[w, b] |= bit


def planes_of(cells: np.ndarray, t: int) -> np.ndarray:
    """The decode layout of a table: ``(ceil(m/64) + 2, t)`` uint64 words (two words of zero
    padding, so a window never reads past the end)."""
    planes = np.zeros(((cells.size + 63) // 64 + 2, t), dtype=np.uint64)
    _to_planes(cells, np.int64(t), planes)
    return planes


# ------------------------------------------------------------------------------ construction


@njit()
def _band(keys, values, sk: np.uint64, m: np.int64, t: np.int64, row_lo, row_hi, rhs) -> bool:
    """Reduce every key's equation into the band (rows stored at their leading cell);
    False when one reduces to 0 = non-zero (dependent rows with different values)."""
    spots = np.uint64(m - 127)
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    for i in range(keys.size):
        h = mix(np.uint64(keys[i]) + sk)
        s = np.int64(_start(h, spots))
        lo, hi = _row(h)
        v = (np.uint64(values[i]) ^ h) & tmask
        while True:
            if lo == np.uint64(0):
                if hi == np.uint64(0):
                    if v != np.uint64(0):
                        return False
                    break  # a consistent duplicate of rows already placed
                lo, hi = hi, np.uint64(0)
                s += 64
            z = _ctz(lo)
            if z > 0:
                zz = np.uint64(z)
                lo = (lo >> zz) | (hi << (np.uint64(64) - zz))
                hi >>= zz
                s += z
            if row_lo[s] == np.uint64(0):  # a stored row has bit 0 set: this cell is free
                row_lo[s], row_hi[s], rhs[s] = lo, hi, v
                break
            lo ^= row_lo[s]
            hi ^= row_hi[s]
            v ^= rhs[s]
    return True


@njit()
def _solve(row_lo, row_hi, rhs, cells) -> None:
    """Back substitution from the last cell: a led cell is its value xor the cells its row
    covers after it; a free cell is 0."""
    m = cells.size
    for s in range(m - 1, -1, -1):
        lo = row_lo[s]
        if lo == np.uint64(0):
            cells[s] = 0
            continue
        acc = rhs[s]
        rest = lo & ~np.uint64(1)  # bit 0 is this cell itself
        while rest != np.uint64(0):
            acc ^= np.uint64(cells[s + _ctz(rest)])
            rest &= rest - np.uint64(1)
        rest = row_hi[s]
        while rest != np.uint64(0):
            acc ^= np.uint64(cells[s + 64 + _ctz(rest)])
            rest &= rest - np.uint64(1)
        cells[s] = np.uint32(acc)


def build_cells(
    keys: np.ndarray, values: np.ndarray, sk: np.uint64, m: int, t: int
) -> np.ndarray | None:
    """The ``m`` cell values for hash constant ``sk``, or None when the system has no
    solution for this seed and size."""
    row_lo = np.zeros(m, dtype=np.uint64)
    row_hi = np.zeros(m, dtype=np.uint64)
    rhs = np.zeros(m, dtype=np.uint64)
    if not _band(keys, values, sk, np.int64(m), np.int64(t), row_lo, row_hi, rhs):
        return None
    cells = np.zeros(m, dtype=np.uint32)
    _solve(row_lo, row_hi, rhs, cells)
    return cells


class RibbonRetrieval(RetrievalStructure):
    """Standard ribbon retrieval, 128-bit rows (see the module docstring)."""

    kind = "ribbon"
    code = 4
    min_version = 4

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        super().__init__(t=t, seed=seed, num_cells=num_cells, words=words, attempts=attempts)
        self._spots = np.int64(num_cells - (WIDTH - 1))
        self._planes = planes_of(bitpack.unpack(words, num_cells, t), t)

    @classmethod
    def _table_size(cls, n: int, attempt: int, cells_per_key: float | None) -> int:
        """``SIZE_STEPS[attempt // 2]`` cells per key (the last step from then on), or a fixed
        ``cells_per_key`` (tests use one below 1 to exercise the retries)."""
        f = cells_per_key or SIZE_STEPS[min(attempt // 2, len(SIZE_STEPS) - 1)]
        m = size_for(n, f)
        if m > MAX_CELLS:
            raise InvalidInputError(f"a ribbon table holds at most {MAX_CELLS} cells")
        return m

    @classmethod
    def _attempt(
        cls, keys: np.ndarray, values: np.ndarray, sk: np.uint64, t: int, scratch: int
    ) -> np.ndarray | None:
        return build_cells(keys, values, sk, scratch, t)  # the scratch is the size

    @classmethod
    def size_problem(cls, num_cells: int) -> str | None:
        if not MIN_CELLS <= num_cells <= MAX_CELLS:
            return f"a ribbon table has {MIN_CELLS} to {MAX_CELLS} cells, got {num_cells}"
        return None

    def planes(self) -> np.ndarray:
        """The decode layout (``planes_of``): what decoders on other devices copy there."""
        return self._planes

    def _query_into(self, keys: np.ndarray, out: np.ndarray) -> None:
        _query_kernel(keys, self._planes, self._sk, self._spots, np.int64(self.t), out)

    def _decode_into(self, out: np.ndarray, lut: np.ndarray) -> None:
        _decode_kernel(out, self._planes, self._sk, self._spots, np.int64(self.t), lut)

    def _count(self, mask: np.ndarray, limit: np.uint64) -> int:
        return _count_kernel(mask, self._planes, self._sk, self._spots, np.int64(self.t), limit)

    def torch_lookup(self, device: torch.device) -> TorchLookup:
        import torch

        from weightless_core.retrieval.torch_decode import TorchLookup

        planes = np.ascontiguousarray(self._planes).view(np.int64).reshape(-1).copy()
        return TorchLookup(self, torch.from_numpy(planes).to(device), 4, self._torch_query)

    def _torch_query(self, planes: torch.Tensor, w: Scratch) -> torch.Tensor:
        """Per bit plane, the parity of each key's 128-bit row ANDed with the plane's window at
        its start (``_query_one``), on int64 bits."""
        import torch

        from weightless_core.retrieval.torch_decode import mix_, mulhi32_, srl

        h, tmp, out = w.h, w.tmp, w.mask
        lo, hi, first, off = w.cells
        lo.copy_(h)
        mix_(lo, tmp)
        hi.copy_(lo)
        mix_(hi, tmp)
        lo.bitwise_or_(1)
        start = srl(h, 32, first)
        mulhi32_(start, int(self._spots), tmp)
        torch.bitwise_and(start, 63, out=off)
        first.bitwise_right_shift_(6).mul_(self.t)  # index of the first word's plane 0
        shifted = off != 0
        safe = torch.where(shifted, off, torch.ones_like(off))
        keep = torch.bitwise_left_shift(torch.ones_like(safe), 64 - safe).sub_(1)

        def window(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            """64 bits from bit ``off`` of the 128-bit ``b:a`` (``safe`` is ``off`` with 0
            replaced by 1 and ``keep`` the mask of a logical shift by it)."""
            right = torch.bitwise_right_shift(a, safe).bitwise_and_(keep)
            right.bitwise_or_(torch.bitwise_left_shift(b, 64 - safe))
            return torch.where(shifted, right, a)

        out.zero_()
        for b in range(self.t):
            a0 = torch.index_select(planes, 0, first + b)
            a1 = torch.index_select(planes, 0, first + (self.t + b))
            a2 = torch.index_select(planes, 0, first + (2 * self.t + b))
            x = window(a0, a1).bitwise_and_(lo).bitwise_xor_(window(a1, a2).bitwise_and_(hi))
            for shift in (32, 16, 8, 4):  # arithmetic shifts: the low bits fold the same
                x.bitwise_xor_(torch.bitwise_right_shift(x, shift))
            parity = torch.bitwise_right_shift(torch.full_like(x, 0x6996), x.bitwise_and_(15))
            out.bitwise_or_(parity.bitwise_and_(1).bitwise_left_shift_(b))
        return out.bitwise_xor_(h.bitwise_and_((1 << self.t) - 1))
