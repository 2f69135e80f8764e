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

Peel order (it fixes the table bytes, which the golden file pins): cells of count 1 are queued
first in ascending cell order, then first in, first out, each newly freed cell at the back of
the queue; a queued cell whose count is no longer 1 when it comes up is skipped.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np

from weightless_core import bitpack
from weightless_core._jit import inline, njit, prange, prefetch
from weightless_core.errors import ConstructionError, InvalidInputError
from weightless_core.hashing import MIX1, MIX2, derive_seed, seed_key
from weightless_core.retrieval import narrow
from weightless_core.retrieval.base import MAX_T, RetrievalStructure, checked_inputs

CELLS_PER_KEY = 1.23
EXTRA_CELLS = 32
MAX_KEYS = (1 << 32) - 1  # per-cell key counts are 32-bit

_CHUNK = 1024
"""Positions per parallel task in the query kernels; their scratch (32 KiB) stays in L1/L2."""

_AHEAD = 16
"""How many iterations ahead the construction kernels prefetch the cells they will touch."""


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


# ------------------------------------------------------------------------------ queries
#
# A query is a hash, three cell reads and a mask. Done one key at a time, the hash arithmetic
# sits between the random table reads and the CPU keeps few reads in flight. The kernels work in
# chunks instead: one pass hashes a chunk to three stream bit positions and the mask (plain
# arithmetic that vectorises), then one pass per block xors in that block's cells (nothing but
# independent loads), then a last pass maps results to outputs.


@inline
def _bit_positions(
    h: np.uint64, b32: np.uint64, t32: np.uint64, bt: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64]:
    """Stream bit positions ``c_j * t`` of the cells of hash ``h``, as ``_cells`` would give.

    ``b32 = B`` and ``t32 = t`` are passed masked to 32 bits (they fit) and ``bt = B*t``, so that
    every product is 32 x 32 bits: one SIMD multiply when the loop vectorises.
    """
    lo = np.uint64(0xFFFFFFFF)
    r0 = h & lo
    r1 = ((h << np.uint64(21)) | (h >> np.uint64(43))) & lo
    r2 = ((h << np.uint64(42)) | (h >> np.uint64(22))) & lo
    p0 = ((r0 * b32) >> np.uint64(32)) * t32
    p1 = bt + ((r1 * b32) >> np.uint64(32)) * t32
    p2 = bt + bt + ((r2 * b32) >> np.uint64(32)) * t32
    return p0, p1, p2


@njit()
def _locate_range(
    start: int, m: int, sk: np.uint64, b: np.uint64, t: np.uint64, p0, p1, p2, acc
) -> None:
    """Keys ``start .. start+m-1``: stream bit positions of their cells and their masks."""
    base = np.uint64(start) + sk
    lo = np.uint64(0xFFFFFFFF)
    b32, t32, bt = b & lo, t & lo, b * t
    for j in range(m):
        h = _mix(base + np.uint64(j))
        p0[j], p1[j], p2[j] = _bit_positions(h, b32, t32, bt)
        acc[j] = h ^ (h >> np.uint64(32))


@njit()
def _locate_keys(
    keys: np.ndarray, start: int, m: int, sk: np.uint64, b: np.uint64, t: np.uint64, p0, p1, p2, acc
) -> None:
    """Like ``_locate_range`` for ``keys[start : start+m]``."""
    lo = np.uint64(0xFFFFFFFF)
    b32, t32, bt = b & lo, t & lo, b * t
    for j in range(m):
        h = _mix(np.uint64(keys[start + j]) + sk)
        p0[j], p1[j], p2[j] = _bit_positions(h, b32, t32, bt)
        acc[j] = h ^ (h >> np.uint64(32))


@njit()
def _xor_cells(words: np.ndarray, pos: np.ndarray, acc: np.ndarray, m: int) -> None:
    """``acc[j] ^=`` the stream bits from ``pos[j]`` on (at least 33 of them; callers mask)."""
    for j in range(m):
        p = pos[j]
        w = p >> np.uint64(5)
        pair = np.uint64(words[w]) | (np.uint64(words[w + np.uint64(1)]) << np.uint64(32))
        acc[j] ^= pair >> (p & np.uint64(31))


@njit()
def _lookup(words: np.ndarray, m: int, p0, p1, p2, acc) -> None:
    _xor_cells(words, p0, acc, m)
    _xor_cells(words, p1, acc, m)
    _xor_cells(words, p2, acc, m)


@njit(parallel=True)
def _query_kernel(
    keys: np.ndarray, words: np.ndarray, sk: np.uint64, b: np.int64, t: np.int64, out: np.ndarray
) -> None:
    bb, tt = np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    n = keys.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        p0 = np.empty(_CHUNK, dtype=np.uint64)
        p1 = np.empty(_CHUNK, dtype=np.uint64)
        p2 = np.empty(_CHUNK, dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_keys(keys, start, m, sk, bb, tt, p0, p1, p2, acc)
        _lookup(words, m, p0, p1, p2, acc)
        for j in range(m):
            out[start + j] = np.uint32(acc[j] & tmask)


@njit(parallel=True)
def _decode_kernel(
    out: np.ndarray, words: np.ndarray, sk: np.uint64, b: np.int64, t: np.int64, table: np.ndarray
) -> None:
    # ``table`` is the codebook followed by one 0.0: an out-of-range result selects that last
    # entry, so the loop has no data-dependent branch. ``out`` is written in place, once.
    bb, tt = np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    k = np.uint64(table.size - 1)
    n = out.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        p0 = np.empty(_CHUNK, dtype=np.uint64)
        p1 = np.empty(_CHUNK, dtype=np.uint64)
        p2 = np.empty(_CHUNK, dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_range(start, m, sk, bb, tt, p0, p1, p2, acc)
        _lookup(words, m, p0, p1, p2, acc)
        for j in range(m):
            out[start + j] = table[min(acc[j] & tmask, k)]


@njit(parallel=True)
def _decode_narrow_kernel(
    out: np.ndarray, cells: np.ndarray, sk: np.uint64, b: np.int64, t: np.int64, table: np.ndarray
) -> None:
    """``_decode_kernel`` on the unpacked cells (``narrow.narrow_cells``): same results."""
    lo = np.uint64(0xFFFFFFFF)
    b32 = np.uint64(b) & lo  # B < 2**32: masked, every product is 32 x 32 bits (one SIMD op)
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    ch = narrow.CHUNK
    n = out.size
    for c in prange((n + ch - 1) // ch):
        start = c * ch
        m = min(ch, n - start)
        i0 = np.empty(ch, dtype=np.uint32)
        i1 = np.empty(ch, dtype=np.uint32)
        i2 = np.empty(ch, dtype=np.uint32)
        acc = np.empty(ch, dtype=np.uint32)
        first = np.uint64(start) + sk
        for j in range(m):
            h = _mix(first + np.uint64(j))
            c0, c1, c2 = _cells(h, b32)
            i0[j], i1[j], i2[j] = np.uint32(c0), np.uint32(c1), np.uint32(c2)
            acc[j] = np.uint32((h ^ (h >> np.uint64(32))) & tmask)
        narrow.xor_gather(cells, i0, acc, m)
        narrow.xor_gather(cells, i1, acc, m)
        narrow.xor_gather(cells, i2, acc, m)
        narrow.write_decoded(out, start, acc, m, table)


@njit(parallel=True)
def _count_kernel(
    pruned: np.ndarray, words: np.ndarray, sk: np.uint64, b: np.int64, t: np.int64, limit: np.uint64
) -> int:
    bb, tt = np.uint64(b), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    n = pruned.size
    total = 0
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        p0 = np.empty(_CHUNK, dtype=np.uint64)
        p1 = np.empty(_CHUNK, dtype=np.uint64)
        p2 = np.empty(_CHUNK, dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_range(start, m, sk, bb, tt, p0, p1, p2, acc)
        _lookup(words, m, p0, p1, p2, acc)
        hits = 0
        for j in range(m):
            hits += pruned[start + j] and (acc[j] & tmask) < limit
        total += hits
    return total


# ------------------------------------------------------------------------------ construction
#
# Each cell has one 16-byte slot (two uint64 in ``slots``): the xor of the hashes of the keys
# touching it, and their count (low 32 bits) next to the xor of their values (high 32 bits). A
# cell of count 1 thus holds its last key's hash and value, from which its cells and mask follow:
# peeling needs no per-key arrays, and each touch of a cell is one cache line. The random
# accesses are prefetched ``_AHEAD`` iterations early, which is what makes construction fast.


@njit()
def _build_hash(
    keys: np.ndarray, values: np.ndarray, sk: np.uint64, b: np.int64, slots, hashes
) -> None:
    """Fill the zeroed ``slots`` from all keys; leaves every key's hash in ``hashes``."""
    n = keys.size
    bb = np.uint64(b)
    one = np.uint64(1)
    for i in range(n):
        hashes[i] = _mix(np.uint64(keys[i]) + sk)
    for i in range(n):
        if i + _AHEAD < n:
            d0, d1, d2 = _cells(hashes[i + _AHEAD], bb)
            prefetch(slots, d0 + d0)
            prefetch(slots, d1 + d1)
            prefetch(slots, d2 + d2)
        h = hashes[i]
        c0, c1, c2 = _cells(h, bb)
        tag = np.uint64(values[i]) << np.uint64(32)
        for c in (c0, c1, c2):
            s = c + c
            slots[s] ^= h
            slots[s + one] = (slots[s + one] + one) ^ tag


@njit()
def _build_peel(slots, b: np.int64, queue, peel_h, peel_v, peel_c) -> int:
    """Peel in the documented order; returns how many keys were peeled (all of them: success)."""
    m = 3 * b
    bb = np.uint64(b)
    one = np.uint64(1)
    low = np.uint64(0xFFFFFFFF)
    qn = 0
    for c in range(m):
        if slots[2 * c + 1] & low == one:
            queue[qn] = c
            qn += 1
    sn = 0
    qi = 0
    while qi < qn:
        # Two-stage prefetch: the slot of a cell 2*_AHEAD places ahead in the queue, and the
        # cells of the key named by the cell _AHEAD places ahead (its slot is cached by now).
        if qi + 2 * _AHEAD < qn:
            prefetch(slots, 2 * queue[qi + 2 * _AHEAD])
        if qi + _AHEAD < qn:
            e = 2 * queue[qi + _AHEAD]
            if slots[e + 1] & low == one:
                d0, d1, d2 = _cells(slots[e], bb)
                prefetch(slots, d0 + d0)
                prefetch(slots, d1 + d1)
                prefetch(slots, d2 + d2)
        c = queue[qi]
        qi += 1
        if slots[2 * c + 1] & low != one:
            continue
        h = slots[2 * c]
        tag = slots[2 * c + 1] & ~low
        peel_h[sn] = h
        peel_v[sn] = np.uint32(tag >> np.uint64(32))
        peel_c[sn] = c
        sn += 1
        c0, c1, c2 = _cells(h, bb)
        for d in (c0, c1, c2):
            s = d + d
            slots[s] ^= h
            cnt = (slots[s + one] - one) ^ tag
            slots[s + one] = cnt
            if cnt & low == one:
                queue[qn] = d
                qn += 1
    return sn


@njit()
def _build_assign(peel_h, peel_v, peel_c, b: np.int64, t: np.int64, x) -> None:
    """Assign cells in reverse peel order so every key's query returns its value."""
    bb = np.uint64(b)
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    for s in range(peel_h.size - 1, -1, -1):
        if s >= _AHEAD:
            d0, d1, d2 = _cells(peel_h[s - _AHEAD], bb)
            prefetch(x, d0)
            prefetch(x, d1)
            prefetch(x, d2)
        h = peel_h[s]
        c0, c1, c2 = _cells(h, bb)
        vm = np.uint32((np.uint64(peel_v[s]) ^ h ^ (h >> np.uint64(32))) & tmask)
        # x[peel_c[s]] is still 0 here (each cell is peeled at most once), so xoring all three
        # cells, the peeled one included, is the same as xoring the other two.
        x[peel_c[s]] = vm ^ x[c0] ^ x[c1] ^ x[c2]


class _Scratch:
    """Work arrays of one construction, reused across attempts (allocated by numpy, which asks
    the kernel for huge pages on large arrays: fewer TLB misses on the random accesses)."""

    def __init__(self, n: int, b: int):
        m = 3 * b
        self.slots = np.empty(2 * m, dtype=np.uint64)
        self.queue = np.empty(m, dtype=np.int64)
        self.hashes = np.empty(n, dtype=np.uint64)  # reused for the peeled keys' hashes
        self.peel_v = np.empty(n, dtype=np.uint32)
        self.peel_c = np.empty(n, dtype=np.int64)


def _build_once(
    keys: np.ndarray, values: np.ndarray, sk: int, b: int, t: int, w: _Scratch
) -> np.ndarray | None:
    """The ``3*b`` cell values for hash constant ``sk``, or None when peeling fails."""
    skk, bb = np.uint64(sk), np.int64(b)
    w.slots.fill(0)
    with _wrapping():
        _build_hash(keys, values, skk, bb, w.slots, w.hashes)
        if _build_peel(w.slots, bb, w.queue, w.hashes, w.peel_v, w.peel_c) != keys.size:
            return None
        x = np.zeros(3 * b, dtype=np.uint32)
        _build_assign(w.hashes, w.peel_v, w.peel_c, bb, np.int64(t), x)
    return x


def _wrapping() -> np.errstate:
    """Uncompiled kernels do their mod-2**64 arithmetic on numpy scalars, which warn on the
    (intended) wrap-around; this silences that. Compiled kernels never warn."""
    return np.errstate(over="ignore")


class BloomierFilter(RetrievalStructure):
    """Bloomier filter with a t-bit mask (k=3, three blocks); see the module docstring."""

    kind = "bloomier"
    code = 1

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        super().__init__(t=t, seed=seed, num_cells=num_cells, words=words, attempts=attempts)
        self._b = np.int64(num_cells // 3)
        self._sk = np.uint64(seed_key(seed))

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
        """See ``RetrievalStructure.build``; ``cells_per_key`` sizes the table (tests lower it
        below the peeling threshold to exercise the retries)."""
        keys, values = checked_inputs(
            keys, values, t=t, seed=seed, max_keys=MAX_KEYS, max_attempts=max_attempts
        )
        if not cells_per_key > 0:
            raise InvalidInputError(f"cells_per_key must be > 0, got {cells_per_key}")
        b = block_length(keys.size, cells_per_key)
        scratch = _Scratch(keys.size, b)
        for attempt in range(max_attempts):
            s = derive_seed(seed, attempt)
            cells = _build_once(keys, values, seed_key(s), b, t, scratch)
            if cells is not None:
                words = bitpack.pack(cells, t)
                return cls(t=t, seed=s, num_cells=3 * b, words=words, attempts=attempt + 1)
        dup = keys.size - np.unique(keys).size
        why = f"{dup} keys are duplicates" if dup else "the table is too small for these keys"
        raise ConstructionError(
            f"Bloomier construction failed all {max_attempts} attempts for {keys.size} keys "
            f"({3 * b} cells): {why}"
        )

    @classmethod
    def size_problem(cls, num_cells: int) -> str | None:
        if num_cells < 3 or num_cells % 3 or num_cells // 3 > MAX_KEYS:
            return f"a Bloomier table has 3*B cells with 1 <= B <= {MAX_KEYS}, got {num_cells}"
        return None

    def query(self, keys: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.empty(flat.size, dtype=np.uint32)
        with _wrapping():
            _query_kernel(flat, self._words, self._sk, self._b, np.int64(self.t), out)
        return out.reshape(np.shape(keys))

    def decode_dense(self, out: np.ndarray, codebook: np.ndarray) -> None:
        narrow.check_dense_out(out)
        table = narrow.decode_table(codebook)
        cells = narrow.narrow_cells(self._words, self.num_cells, self.t)
        with _wrapping():
            if cells is not None:
                _decode_narrow_kernel(out, cells, self._sk, self._b, np.int64(self.t), table)
            else:
                _decode_kernel(out, self._words, self._sk, self._b, np.int64(self.t), table)

    def count_in_range(self, pruned: np.ndarray, limit: int) -> int:
        if limit < 0:
            raise InvalidInputError(f"limit must be >= 0, got {limit}")
        mask = np.ascontiguousarray(pruned, dtype=np.bool_).ravel()
        lim = np.uint64(min(int(limit), 1 << MAX_T))
        with _wrapping():
            n = _count_kernel(mask, self._words, self._sk, self._b, np.int64(self.t), lim)
        return int(n)
