"""The Bloomier filter of the Weightless paper: 3 cells per key plus a t-bit mask.

Layout (``docs/format.md`` is normative): ``m = 3*B`` cells of ``t`` bits in three equal blocks,
``B = ceil((32 + 1.23*n) / 3)``. For key ``k`` with ``h = hash64(seed, k)``:

* block-local positions ``r_j = lo32(rotl64(h, 21*j))`` for ``j = 0, 1, 2``,
* cells ``c_j = j*B + (r_j * B >> 32)``, one per block, so always distinct,
* mask ``M = (h ^ (h >> 32)) & (2**t - 1)``,
* query ``q(k) = M ^ X[c_0] ^ X[c_1] ^ X[c_2]``.

Construction peels the 3-uniform hypergraph of the keys (a cell touched by exactly one remaining
key names that key) and assigns cells in reverse peel order. Peeling succeeds with high
probability when ``m/n >= 1.222``; a failure retries with a derived seed.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np

from weightless_core import bitpack
from weightless_core._jit import inline, njit, prange
from weightless_core.errors import ConstructionError, InvalidInputError
from weightless_core.hashing import MIX1, MIX2, derive_seed, seed_key
from weightless_core.retrieval.base import MAX_T, RetrievalStructure

CELLS_PER_KEY = 1.23
EXTRA_CELLS = 32
MAX_KEYS = (1 << 32) - 1  # key ids in the peeling arrays are uint32


def block_length(n: int, cells_per_key: float = CELLS_PER_KEY) -> int:
    """Cells per block ``B`` for ``n`` keys (the table has ``3*B`` cells)."""
    return math.ceil((EXTRA_CELLS + cells_per_key * n) / 3)


@inline
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@inline
def _cells(h: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64]:
    lo = np.uint64(0xFFFFFFFF)
    r0 = h & lo
    r1 = ((h << np.uint64(21)) | (h >> np.uint64(43))) & lo
    r2 = ((h << np.uint64(42)) | (h >> np.uint64(22))) & lo
    c0 = (r0 * b) >> np.uint64(32)
    c1 = b + ((r1 * b) >> np.uint64(32))
    c2 = b + b + ((r2 * b) >> np.uint64(32))
    return c0, c1, c2


@inline
def _query_one(
    key: np.uint64, words: np.ndarray, sk: np.uint64, b: np.uint64, t: np.uint64, tmask: np.uint64
) -> np.uint64:
    h = _mix(key + sk)
    c0, c1, c2 = _cells(h, b)
    v = (h ^ (h >> np.uint64(32))) & tmask
    v ^= bitpack.read_cell(words, c0, t, tmask)
    v ^= bitpack.read_cell(words, c1, t, tmask)
    v ^= bitpack.read_cell(words, c2, t, tmask)
    return v


@njit(parallel=True)
def _query_kernel(keys: np.ndarray, words: np.ndarray, sk: int, b: int, t: int, out: np.ndarray):
    skk, bb, tt = np.uint64(sk), np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    for i in prange(keys.size):
        out[i] = np.uint32(_query_one(np.uint64(keys[i]), words, skk, bb, tt, tmask))


@njit(parallel=True)
def _decode_kernel(out: np.ndarray, words: np.ndarray, sk: int, b: int, t: int, table: np.ndarray):
    # ``table`` is the codebook followed by one 0.0: an out-of-range result selects that last
    # entry, so the loop has no data-dependent branch.
    skk, bb, tt = np.uint64(sk), np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    k = np.uint64(table.size - 1)
    for i in prange(out.size):
        v = _query_one(np.uint64(i), words, skk, bb, tt, tmask)
        out[i] = table[min(v, k)]


@njit(parallel=True)
def _count_kernel(pruned: np.ndarray, words: np.ndarray, sk: int, b: int, t: int, limit: int):
    skk, bb, tt = np.uint64(sk), np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    lim = np.uint64(limit)
    total = 0
    for i in prange(pruned.size):
        if pruned[i]:
            if _query_one(np.uint64(i), words, skk, bb, tt, tmask) < lim:
                total += 1
    return total


@njit()
def _build_kernel(keys: np.ndarray, values: np.ndarray, sk: int, b: int, t: int) -> np.ndarray:
    """Peel and assign; returns the m cell values, or an empty array when peeling fails."""
    n = keys.size
    bb, skk = np.uint64(b), np.uint64(sk)
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    m = 3 * b
    cells = np.empty((n, 3), dtype=np.int64)
    vm = np.empty(n, dtype=np.uint32)
    # One uint64 per cell: low 32 bits count the keys touching it, high 32 bits xor their ids,
    # so a cell of count 1 names its last key and each touch is a single memory access.
    slot = np.zeros(m, dtype=np.uint64)
    for i in range(n):
        h = _mix(np.uint64(keys[i]) + skk)
        c0, c1, c2 = _cells(h, bb)
        cells[i, 0], cells[i, 1], cells[i, 2] = c0, c1, c2
        vm[i] = np.uint32((np.uint64(values[i]) ^ h ^ (h >> np.uint64(32))) & tmask)
        tag = np.uint64(i) << np.uint64(32)
        slot[c0] = (slot[c0] + np.uint64(1)) ^ tag
        slot[c1] = (slot[c1] + np.uint64(1)) ^ tag
        slot[c2] = (slot[c2] + np.uint64(1)) ^ tag
    low = np.uint64(0xFFFFFFFF)
    queue = np.empty(m, dtype=np.int64)
    qn = 0
    for c in range(m):
        if slot[c] & low == 1:
            queue[qn] = c
            qn += 1
    order = np.empty(n, dtype=np.int64)
    peeled_from = np.empty(n, dtype=np.int64)
    sn = 0
    qi = 0
    while qi < qn:
        c = queue[qi]
        qi += 1
        if slot[c] & low != 1:
            continue
        k = np.int64(slot[c] >> np.uint64(32))
        order[sn] = k
        peeled_from[sn] = c
        sn += 1
        tag = np.uint64(k) << np.uint64(32)
        for j in range(3):
            d = cells[k, j]
            slot[d] = (slot[d] - np.uint64(1)) ^ tag
            if slot[d] & low == 1:
                queue[qn] = d
                qn += 1
    if sn != n:
        return np.empty(0, dtype=np.uint32)
    x = np.zeros(m, dtype=np.uint32)
    for s in range(n - 1, -1, -1):
        k = order[s]
        x[peeled_from[s]] = vm[k] ^ x[cells[k, 0]] ^ x[cells[k, 1]] ^ x[cells[k, 2]]
    return x


class BloomierFilter(RetrievalStructure):
    """Bloomier filter with a t-bit mask (k=3, three blocks); see the module docstring."""

    kind = "bloomier"
    code = 1

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        self.t = t
        self.seed = seed
        self.num_cells = num_cells
        self.attempts = attempts
        self._words = words
        self._b = num_cells // 3
        self._sk = seed_key(seed)

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        values: np.ndarray,
        *,
        t: int,
        seed: int,
        max_attempts: int = 16,
        cells_per_key: float = CELLS_PER_KEY,
    ) -> Self:
        _check_t(t)
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        values = np.ascontiguousarray(values, dtype=np.uint32).ravel()
        if keys.size != values.size:
            raise InvalidInputError(f"{keys.size} keys but {values.size} values")
        if keys.size > MAX_KEYS:
            raise InvalidInputError(f"at most {MAX_KEYS} keys per table, got {keys.size}")
        if values.size and int(values.max()) >> t:
            raise InvalidInputError(f"values must be < 2**t = {1 << t}, got {int(values.max())}")
        if max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be >= 1, got {max_attempts}")
        b = block_length(keys.size, cells_per_key)
        for attempt in range(max_attempts):
            s = derive_seed(seed, attempt)
            cells = _build_kernel(keys, values, seed_key(s), b, t)
            if cells.size:
                words = bitpack.pack(cells, t)
                return cls(t=t, seed=s, num_cells=3 * b, words=words, attempts=attempt + 1)
        raise ConstructionError(
            f"Bloomier construction failed {max_attempts} times for {keys.size} keys "
            f"({3 * b} cells); are the keys distinct?"
        )

    @classmethod
    def from_table(cls, *, t: int, seed: int, num_cells: int, table: bytes) -> Self:
        _check_t(t)
        if num_cells < 3 or num_cells % 3:
            raise InvalidInputError(f"a Bloomier table has 3*B >= 3 cells, got {num_cells}")
        if len(table) != bitpack.packed_nbytes(num_cells, t):
            raise InvalidInputError(
                f"table of {num_cells} cells of {t} bits needs "
                f"{bitpack.packed_nbytes(num_cells, t)} bytes, got {len(table)}"
            )
        return cls(
            t=t, seed=seed, num_cells=num_cells, words=bitpack.bytes_to_words(table, num_cells, t)
        )

    def table_bytes(self) -> bytes:
        return bitpack.words_to_bytes(self._words, self.num_cells, self.t)

    def cells(self) -> np.ndarray:
        """The table unpacked to one uint32 per cell (for inspection and tests)."""
        return bitpack.unpack(self._words, self.num_cells, self.t)

    def query(self, keys: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.empty(flat.size, dtype=np.uint32)
        _query_kernel(flat, self._words, self._sk, self._b, self.t, out)
        return out.reshape(np.shape(keys))

    def decode_dense(self, out: np.ndarray, codebook: np.ndarray) -> None:
        table = np.append(np.asarray(codebook, dtype=np.float32), np.float32(0.0))
        _decode_kernel(out, self._words, self._sk, self._b, self.t, table)

    def count_in_range(self, pruned: np.ndarray, limit: int) -> int:
        return int(_count_kernel(pruned, self._words, self._sk, self._b, self.t, limit))


def _check_t(t: int) -> None:
    if not 1 <= t <= MAX_T:
        raise InvalidInputError(f"t (bits per cell) must be in 1..{MAX_T}, got {t}")
