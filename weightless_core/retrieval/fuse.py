"""Binary fuse retrieval (Graf & Lemire 2022), 3-wise and 4-wise, with a t-bit mask.

Same contract as the Bloomier filter (a stored key queries to its value, any other key to
uniform t bits), in fewer cells: about 1.125 (3-wise) or 1.075 (4-wise) per key for large
``n`` instead of 1.23, because each key's cells lie in ``a`` consecutive segments rather than
anywhere in the table, and such spatially coupled hypergraphs still peel at that density.

Layout (``docs/format.md`` is normative), arity ``a`` in {3, 4}: ``m = (S + a - 1) * L`` cells
of ``t`` bits, ``S >= 1`` start segments of ``L = 2**k`` cells, ``k = segment_bits(a, m)`` (so
the table size alone fixes the layout). For key ``key`` with ``h = hash64(seed, key)`` and
``g = mix64(h)``:

* start segment ``s = ((h >> 32) * S) >> 32`` (``0 <= s < S``),
* cells ``c_j = (s + j) * L + ((g >> (w*j)) & (L - 1))`` for ``j = 0 .. a-1``, ``w = 64 // a``
  (distinct: one per segment; ``L <= 2**w`` keeps the offset fields of ``g`` apart),
* mask ``M = h & (2**t - 1)``,
* query ``q(key) = M ^ X[c_0] ^ ... ^ X[c_{a-1}]``.

Construction sorts the keys by start segment (so adding them to the table touches a sliding
window of it, not all of it), peels the hypergraph (a cell touched by exactly one remaining key
names that key: each cell keeps the xor of its keys' hashes) and assigns cells in reverse peel
order. Peeling fails with small probability; a failure retries with a derived seed.

Peel order (it fixes the table bytes, which the golden file pins), as in the Bloomier filter:
cells of count 1 are queued first in ascending cell order, then first in, first out, each newly
freed cell at the back of the queue (a key's cells in order ``j = 0 .. a-1``); a queued cell
whose count is no longer 1 when it comes up is skipped.
"""

from __future__ import annotations

import math
from typing import ClassVar, Self

import numpy as np

from weightless_core import bitpack
from weightless_core._jit import inline, njit, prange, prefetch
from weightless_core.errors import ConstructionError, InvalidInputError
from weightless_core.hashing import derive_seed, seed_key
from weightless_core.retrieval import narrow
from weightless_core.retrieval.base import MAX_T, RetrievalStructure, checked_inputs
from weightless_core.retrieval.bloomier import _CHUNK, _mix, _wrapping, _xor_cells

MAX_KEYS = (1 << 32) - 1  # per-cell key counts are 32-bit
MIN_SEGMENT_BITS = 2
MAX_SEGMENTS = (1 << 32) - 1  # the start segment is a 32 x 32-bit product

# SEGMENT_STEPS[a][i] is the smallest table (in cells) whose segments have 2**(3 + i) cells.
# They are the paper's rule for the segment length, floor(ln(n) / ln(3.33) + 2.25) bits for
# 3-wise and floor(ln(n) / ln(2.91) - 0.5) for 4-wise (n keys), moved from n to the table size
# the writer aims at for that n (ceil(size_factor * n)), so that a reader, which knows only
# the table size, finds the same length. The last step is the largest segment: 2**18 cells as
# in the paper for 3-wise, 2**16 for 4-wise (four 16-bit offset fields fill a 64-bit hash).
SEGMENT_STEPS: dict[int, tuple[int, ...]] = {
    3: (13, 23, 54, 151, 450, 1389, 4372, 13941, 44845, 145153, 472034, 1548363, 5156044,
        17169623, 57174843, 190392222),
    4: (80, 199, 521, 1404, 3849, 10676, 29864, 84073, 237850, 676194, 1967723, 5726073,
        16662870, 48488952),
}  # fmt: skip

_AHEAD = 16
"""How many iterations ahead the construction kernels prefetch the cells they will touch."""


def segment_bits(arity: int, num_cells: int) -> int:
    """``k`` of the segment length ``L = 2**k`` of a table of ``num_cells`` cells: 2 plus the
    number of ``SEGMENT_STEPS[arity]`` not above ``num_cells``."""
    return MIN_SEGMENT_BITS + sum(1 for step in SEGMENT_STEPS[arity] if step <= num_cells)


def size_factor(arity: int, n: int) -> float:
    """Target cells per key for ``n`` keys: the paper's, growing for small ``n`` where the
    coupling has fewer segments to work with."""
    if n < 2:
        return 1.0  # one key peels in any table: the smallest (a segments of 4 cells)
    if arity == 3:
        return max(1.125, 0.875 + 0.25 * math.log(1e6) / math.log(n))
    return max(1.075, 0.77 + 0.305 * math.log(6e5) / math.log(n))


def layout(arity: int, n: int, cells_per_key: float | None = None) -> tuple[int, int]:
    """``(S, k)`` for ``n`` keys: the fewest segments that give ``cells_per_key * n`` cells
    (default ``size_factor``), with ``k`` consistent with the resulting table size."""
    f = size_factor(arity, n) if cells_per_key is None else cells_per_key
    target = max(1, math.ceil(f * n))
    k = segment_bits(arity, target)
    while True:
        seg = 1 << k
        s = max(1, -(-target // seg) - (arity - 1))
        m = (s + arity - 1) * seg
        k2 = segment_bits(arity, m)
        if k2 == k:
            return s, k
        k = k2  # m crossed a step of segment_bits: larger segments, same target (rare)


def parse_num_cells(arity: int, num_cells: int) -> tuple[int, int] | None:
    """``(S, k)`` of a stored table of ``num_cells`` cells, or None if no layout has that size."""
    k = segment_bits(arity, num_cells)
    seg = 1 << k
    if num_cells < arity * seg or num_cells % seg:
        return None
    s = num_cells // seg - (arity - 1)
    return (s, k) if s <= MAX_SEGMENTS else None


# ------------------------------------------------------------------------------ hashing


@inline
def _start(h: np.uint64, segs: np.uint64) -> np.uint64:
    return ((h >> np.uint64(32)) * segs) >> np.uint64(32)


@inline
def _cell(base: np.uint64, g: np.uint64, j: np.uint64, k: np.uint64, fb: np.uint64) -> np.uint64:
    """Cell ``c_j`` of a key whose start segment begins at cell ``base``; ``fb = 64 // a`` is
    the spacing of the offset fields in ``g``."""
    lmask = (np.uint64(1) << k) - np.uint64(1)
    return base + (j << k) + ((g >> (fb * j)) & lmask)


# ------------------------------------------------------------------------------ queries
#
# As in the Bloomier kernels: one arithmetic pass hashes a chunk of keys to the stream bit
# positions of their cells and their masks, then one pass per arity xors in that cell of every
# key (nothing but independent loads, which the CPU overlaps), then results are written.


@inline
def _positions(
    h: np.uint64, segs: np.uint64, k: np.uint64, t: np.uint64, fb: np.uint64, four: bool, pos, i
) -> None:
    """Stream bit positions ``c_j * t`` of the cells of hash ``h`` into ``pos[:, i]``."""
    g = _mix(h)
    lmask = (np.uint64(1) << k) - np.uint64(1)
    seg = np.uint64(1) << k
    b = _start(h, segs) << k
    pos[0, i] = (b + (g & lmask)) * t
    pos[1, i] = (b + seg + ((g >> fb) & lmask)) * t
    pos[2, i] = (b + seg + seg + ((g >> (fb + fb)) & lmask)) * t
    if four:
        pos[3, i] = (b + seg + seg + seg + ((g >> (fb + fb + fb)) & lmask)) * t


@njit()
def _locate_range(start: int, m: int, sk: np.uint64, segs, k, t, arity: np.int64, pos, acc):
    """Positions ``start .. start+m-1``: stream bit positions of their cells and their masks."""
    first = np.uint64(start) + sk
    fb = np.uint64(64 // arity)
    four = arity == 4
    for i in range(m):
        h = _mix(first + np.uint64(i))
        _positions(h, segs, k, t, fb, four, pos, i)
        acc[i] = h


@njit()
def _locate_keys(keys, start: int, m: int, sk: np.uint64, segs, k, t, arity: np.int64, pos, acc):
    """Like ``_locate_range`` for ``keys[start : start+m]``."""
    fb = np.uint64(64 // arity)
    four = arity == 4
    for i in range(m):
        h = _mix(np.uint64(keys[start + i]) + sk)
        _positions(h, segs, k, t, fb, four, pos, i)
        acc[i] = h


@njit()
def _lookup(words, m: int, arity: np.int64, pos, acc) -> None:
    for j in range(arity):
        _xor_cells(words, pos[j], acc, m)


@njit(parallel=True)
def _query_kernel(
    keys, words, sk: np.uint64, segs: np.int64, k: np.int64, arity: np.int64, t: np.int64, out
) -> None:
    ss, kk, tt = np.uint64(segs), np.uint64(k), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    n = keys.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        pos = np.empty((4, _CHUNK), dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_keys(keys, start, m, sk, ss, kk, tt, arity, pos, acc)
        _lookup(words, m, arity, pos, acc)
        for j in range(m):
            out[start + j] = np.uint32(acc[j] & tmask)


@njit(parallel=True)
def _decode_kernel(
    out, words, sk: np.uint64, segs: np.int64, k: np.int64, arity: np.int64, t: np.int64, table
) -> None:
    # ``table`` is the codebook followed by one 0.0: an out-of-range result selects that last
    # entry, so the loop has no data-dependent branch. ``out`` is written in place, once.
    ss, kk, tt = np.uint64(segs), np.uint64(k), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    last = np.uint64(table.size - 1)
    n = out.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        pos = np.empty((4, _CHUNK), dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_range(start, m, sk, ss, kk, tt, arity, pos, acc)
        _lookup(words, m, arity, pos, acc)
        for j in range(m):
            out[start + j] = table[min(acc[j] & tmask, last)]


@njit(parallel=True)
def _decode_narrow_kernel(
    out, cells, sk: np.uint64, segs: np.int64, k: np.int64, arity: np.int64, t: np.int64, table
) -> None:
    """``_decode_kernel`` on the unpacked cells (``narrow.narrow_cells``): same results."""
    lo = np.uint64(0xFFFFFFFF)
    ss, kk = np.uint64(segs) & lo, np.uint64(k)  # S < 2**32: 32 x 32-bit products
    fb = np.uint64(64 // arity)
    lmask = (np.uint64(1) << kk) - np.uint64(1)
    seg = np.uint64(1) << kk
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    ch = narrow.CHUNK
    n = out.size
    for c in prange((n + ch - 1) // ch):
        start = c * ch
        m = min(ch, n - start)
        index = np.empty((4, ch), dtype=np.uint32)
        acc = np.empty(ch, dtype=np.uint32)
        first = np.uint64(start) + sk
        for j in range(m):
            h = _mix(first + np.uint64(j))
            g = _mix(h)
            b = _start(h, ss) << kk
            index[0, j] = np.uint32(b + (g & lmask))
            index[1, j] = np.uint32(b + seg + ((g >> fb) & lmask))
            index[2, j] = np.uint32(b + seg + seg + ((g >> (fb + fb)) & lmask))
            index[3, j] = np.uint32(b + seg + seg + seg + ((g >> (fb + fb + fb)) & lmask))
            acc[j] = np.uint32(h & tmask)
        for i in range(arity):
            narrow.xor_gather(cells, index[i], acc, m)
        narrow.write_decoded(out, start, acc, m, table)


@njit(parallel=True)
def _count_kernel(
    pruned, words, sk: np.uint64, segs: np.int64, k: np.int64, arity: np.int64, t: np.int64, limit
) -> int:
    ss, kk, tt = np.uint64(segs), np.uint64(k), np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    n = pruned.size
    total = 0
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        m = min(_CHUNK, n - start)
        pos = np.empty((4, _CHUNK), dtype=np.uint64)
        acc = np.empty(_CHUNK, dtype=np.uint64)
        _locate_range(start, m, sk, ss, kk, tt, arity, pos, acc)
        _lookup(words, m, arity, pos, acc)
        hits = 0
        for j in range(m):
            hits += pruned[start + j] and (acc[j] & tmask) < limit
        total += hits
    return total


# ------------------------------------------------------------------------------ construction
#
# Each cell has one 16-byte slot (two uint64 in ``slots``): the xor of the hashes of the keys
# touching it, and their count (low 32 bits) next to the xor of their values (high 32 bits), as
# in the Bloomier construction. A cell of count 1 thus names its last key's hash and value.


@njit()
def _build_sort(
    keys, values, sk: np.uint64, segs: np.int64, hashes, order_h, order_v, bucket
) -> None:
    """Hash every key and counting-sort (hash, value) pairs by start segment into ``order_*``."""
    n = keys.size
    ss = np.uint64(segs)
    bucket[:] = 0
    for i in range(n):
        h = _mix(np.uint64(keys[i]) + sk)
        hashes[i] = h
        bucket[_start(h, ss) + np.uint64(1)] += 1
    for s in range(segs):
        bucket[s + 1] += bucket[s]
    for i in range(n):
        h = hashes[i]
        s = _start(h, ss)
        p = bucket[s]
        bucket[s] = p + 1
        order_h[p] = h
        order_v[p] = values[i]


@njit()
def _build_add(order_h, order_v, segs: np.int64, k: np.int64, arity: np.int64, slots) -> None:
    """Add every key (in segment order: a sliding window of the table) to the zeroed slots."""
    ss, kk, fb = np.uint64(segs), np.uint64(k), np.uint64(64 // arity)
    one = np.uint64(1)
    n = order_h.size
    for i in range(n):
        if i + _AHEAD < n:
            ha = order_h[i + _AHEAD]
            ga = _mix(ha)
            ba = _start(ha, ss) << kk
            for j in range(arity):
                prefetch(slots, _cell(ba, ga, np.uint64(j), kk, fb) * np.uint64(2))
        h = order_h[i]
        g = _mix(h)
        base = _start(h, ss) << kk
        tag = np.uint64(order_v[i]) << np.uint64(32)
        for j in range(arity):
            s = _cell(base, g, np.uint64(j), kk, fb) * np.uint64(2)
            slots[s] ^= h
            slots[s + one] = (slots[s + one] + one) ^ tag


@njit()
def _build_peel(
    slots, segs: np.int64, k: np.int64, arity: np.int64, queue, peel_h, peel_v, peel_c
) -> int:
    """Peel in the documented order; returns how many keys were peeled (all of them: success)."""
    ss, kk, fb = np.uint64(segs), np.uint64(k), np.uint64(64 // arity)
    m = (segs + arity - 1) << k
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
                ha = slots[e]
                ga = _mix(ha)
                ba = _start(ha, ss) << kk
                for j in range(arity):
                    prefetch(slots, _cell(ba, ga, np.uint64(j), kk, fb) * np.uint64(2))
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
        g = _mix(h)
        base = _start(h, ss) << kk
        for j in range(arity):
            d = _cell(base, g, np.uint64(j), kk, fb)
            s = d + d
            slots[s] ^= h
            cnt = (slots[s + one] - one) ^ tag
            slots[s + one] = cnt
            if cnt & low == one:
                queue[qn] = d
                qn += 1
    return sn


@njit()
def _build_assign(
    peel_h, peel_v, peel_c, segs: np.int64, k: np.int64, arity: np.int64, t: np.int64, x
) -> None:
    """Assign cells in reverse peel order so every key's query returns its value."""
    ss, kk, fb = np.uint64(segs), np.uint64(k), np.uint64(64 // arity)
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    for s in range(peel_h.size - 1, -1, -1):
        if s >= _AHEAD:
            ha = peel_h[s - _AHEAD]
            ga = _mix(ha)
            ba = _start(ha, ss) << kk
            for j in range(arity):
                prefetch(x, _cell(ba, ga, np.uint64(j), kk, fb))
        h = peel_h[s]
        g = _mix(h)
        base = _start(h, ss) << kk
        # x[peel_c[s]] is still 0 here (each cell is peeled at most once), so xoring every cell
        # of the key, the peeled one included, is the same as xoring the others.
        v = (np.uint64(peel_v[s]) ^ h) & tmask
        for j in range(arity):
            v ^= np.uint64(x[_cell(base, g, np.uint64(j), kk, fb)])
        x[peel_c[s]] = np.uint32(v)


class _Scratch:
    """Work arrays of one construction, reused across attempts of the same layout."""

    def __init__(self, n: int, segs: int, k: int, arity: int):
        m = (segs + arity - 1) << k
        self.slots = np.empty(2 * m, dtype=np.uint64)
        self.queue = np.empty(m, dtype=np.int64)
        self.hashes = np.empty(n, dtype=np.uint64)
        self.order_h = np.empty(n, dtype=np.uint64)
        self.order_v = np.empty(n, dtype=np.uint32)
        self.bucket = np.empty(segs + 1, dtype=np.int64)
        self.peel_h = self.hashes  # free once the keys are sorted
        self.peel_v = np.empty(n, dtype=np.uint32)
        self.peel_c = np.empty(n, dtype=np.int64)


def build_cells(
    keys: np.ndarray,
    values: np.ndarray,
    sk: int,
    segs: int,
    k: int,
    arity: int,
    t: int,
    w: _Scratch,
) -> np.ndarray | None:
    """The cell values of one attempt with hash constant ``sk``, or None when peeling fails.

    ``keys`` uint64 and ``values`` uint32, both 1-D and checked by the caller.
    """
    ss, kk, aa = np.int64(segs), np.int64(k), np.int64(arity)
    w.slots.fill(0)
    with _wrapping():
        _build_sort(keys, values, np.uint64(sk), ss, w.hashes, w.order_h, w.order_v, w.bucket)
        _build_add(w.order_h, w.order_v, ss, kk, aa, w.slots)
        peeled = _build_peel(w.slots, ss, kk, aa, w.queue, w.peel_h, w.peel_v, w.peel_c)
        if peeled != keys.size:
            return None
        x = np.zeros((segs + arity - 1) << k, dtype=np.uint32)
        _build_assign(w.peel_h, w.peel_v, w.peel_c, ss, kk, aa, np.int64(t), x)
    return x


class _BinaryFuse(RetrievalStructure):
    """Binary fuse retrieval of arity ``ARITY``; see the module docstring."""

    ARITY: ClassVar[int]

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        layout_ = parse_num_cells(self.ARITY, num_cells)
        if layout_ is None:
            raise InvalidInputError(
                f"{num_cells} cells is not a {self.kind} table size (see docs/format.md)"
            )
        super().__init__(t=t, seed=seed, num_cells=num_cells, words=words, attempts=attempts)
        self._segs = np.int64(layout_[0])
        self._k = np.int64(layout_[1])
        self._sk = np.uint64(seed_key(seed))

    @property
    def segment_length(self) -> int:
        return 1 << int(self._k)

    @property
    def segment_count(self) -> int:
        """Start segments ``S`` (the table has ``S + arity - 1`` segments)."""
        return int(self._segs)

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        values: np.ndarray,
        *,
        t: int,
        seed: int,
        max_attempts: int = 16,
        cells_per_key: float | None = None,
    ) -> Self:
        """See ``RetrievalStructure.build``; ``cells_per_key`` overrides ``size_factor`` (tests
        lower it below the peeling threshold to exercise the retries)."""
        keys, values = checked_inputs(
            keys, values, t=t, seed=seed, max_keys=MAX_KEYS, max_attempts=max_attempts
        )
        if cells_per_key is not None and not cells_per_key > 0:
            raise InvalidInputError(f"cells_per_key must be > 0, got {cells_per_key}")
        segs, k = layout(cls.ARITY, keys.size, cells_per_key)
        num_cells = (segs + cls.ARITY - 1) << k
        scratch = _Scratch(keys.size, segs, k, cls.ARITY)
        for attempt in range(max_attempts):
            s = derive_seed(seed, attempt)
            cells = build_cells(keys, values, seed_key(s), segs, k, cls.ARITY, t, scratch)
            if cells is not None:
                words = bitpack.pack(cells, t)
                return cls(t=t, seed=s, num_cells=num_cells, words=words, attempts=attempt + 1)
        dup = keys.size - np.unique(keys).size
        why = f"{dup} keys are duplicates" if dup else "the table is too small for these keys"
        raise ConstructionError(
            f"{cls.kind} construction failed all {max_attempts} attempts for {keys.size} keys "
            f"({num_cells} cells): {why}"
        )

    @classmethod
    def size_problem(cls, num_cells: int) -> str | None:
        if parse_num_cells(cls.ARITY, num_cells) is None:
            return (
                f"{num_cells} cells is not a {cls.kind} table size: it must be (S + "
                f"{cls.ARITY - 1}) * 2**segment_bits with 1 <= S < 2**32 (docs/format.md)"
            )
        return None

    def _params(self) -> tuple[np.uint64, np.int64, np.int64, np.int64, np.int64]:
        return self._sk, self._segs, self._k, np.int64(self.ARITY), np.int64(self.t)

    def query(self, keys: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.empty(flat.size, dtype=np.uint32)
        with _wrapping():
            _query_kernel(flat, self._words, *self._params(), out)
        return out.reshape(np.shape(keys))

    def decode_dense(self, out: np.ndarray, codebook: np.ndarray) -> None:
        narrow.check_dense_out(out)
        table = narrow.decode_table(codebook)
        cells = narrow.narrow_cells(self._words, self.num_cells, self.t)
        with _wrapping():
            if cells is not None:
                _decode_narrow_kernel(out, cells, *self._params(), table)
            else:
                _decode_kernel(out, self._words, *self._params(), table)

    def count_in_range(self, pruned: np.ndarray, limit: int) -> int:
        if limit < 0:
            raise InvalidInputError(f"limit must be >= 0, got {limit}")
        mask = np.ascontiguousarray(pruned, dtype=np.bool_).ravel()
        lim = np.uint64(min(int(limit), 1 << MAX_T))
        with _wrapping():
            n = _count_kernel(mask, self._words, *self._params(), lim)
        return int(n)


class BinaryFuse3(_BinaryFuse):
    """3-wise binary fuse retrieval: about 1.125 cells per key for large ``n``."""

    kind = "fuse3"
    code = 2
    ARITY = 3


class BinaryFuse4(_BinaryFuse):
    """4-wise binary fuse retrieval: about 1.075 cells per key for large ``n``."""

    kind = "fuse4"
    code = 3
    ARITY = 4
