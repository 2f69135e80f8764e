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
order, in the order the Bloomier filter uses (``cellxor``: the golden file pins it). Peeling
fails with small probability; a failure retries with a derived seed.

All but the layout and the sort is shared with the Bloomier filter (``cellxor``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from weightless_core._jit import inline, njit
from weightless_core.errors import InvalidInputError
from weightless_core.retrieval import cellxor
from weightless_core.retrieval.base import mix
from weightless_core.retrieval.cellxor import CellXorStructure

if TYPE_CHECKING:
    import torch

    from weightless_core.retrieval.torch_decode import Scratch

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


def segment_bits(arity: int, num_cells: int) -> int:
    """``k`` of the segment length ``L = 2**k`` of a table of ``num_cells`` cells: 2 plus the
    number of ``SEGMENT_STEPS[arity]`` not above ``num_cells``."""
    return MIN_SEGMENT_BITS + sum(1 for step in SEGMENT_STEPS[arity] if step <= num_cells)


GROWTH = 0.025
"""How much larger a table gets after every ``GROWTH_EVERY`` failed construction attempts."""
GROWTH_EVERY = 4


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


# ------------------------------------------------------------------------------ kernels


@inline
def _start(h: np.uint64, segs: np.uint64) -> np.uint64:
    return ((h >> np.uint64(32)) * segs) >> np.uint64(32)


@inline
def _cells(h: np.uint64, p: tuple[np.uint64, np.uint64, np.uint64]) -> tuple[np.uint64, ...]:
    """The mask bits and cells ``c_0 .. c_3`` of hash ``h``, four whatever the arity (no
    branch in the hashing loop; see ``cellxor``). ``p = (S, k, w)``: start segments, segment
    bits and the spacing ``w = 64 // a`` of the offset fields in ``g``."""
    segs, k, fb = p
    g = mix(h)
    lmask = (np.uint64(1) << k) - np.uint64(1)
    seg = np.uint64(1) << k
    b = _start(h, segs & np.uint64(0xFFFFFFFF)) << k  # S < 2**32: a 32 x 32-bit product
    return (
        h,
        b + (g & lmask),
        b + seg + ((g >> fb) & lmask),
        b + seg + seg + ((g >> (fb + fb)) & lmask),
        b + seg + seg + seg + ((g >> (fb + fb + fb)) & lmask),
    )


@njit(parallel=True)
def _scan(mode, arity, table, sk, p, t, job) -> int:
    return cellxor.scan(_cells, mode, arity, table, sk, p, t, job)


@njit()
def _solve(arity, keys, values, sk, p, t, w, x) -> bool:
    """Sort the keys' hashes by start segment, then ``cellxor.solve`` in that order (scratch
    ``w`` as ``_BinaryFuse._scratch``)."""
    hashes, order_h, order_v, bucket = w[2], w[5], w[6], w[7]
    segs = p[0]
    bucket[:] = 0
    for i in range(keys.size):
        h = mix(np.uint64(keys[i]) + sk)
        hashes[i] = h
        bucket[_start(h, segs) + np.uint64(1)] += 1
    for s in range(1, bucket.size):
        bucket[s] += bucket[s - 1]
    for i in range(keys.size):
        h = hashes[i]
        s = _start(h, segs)
        q = bucket[s]
        bucket[s] = q + 1
        order_h[q] = h
        order_v[q] = values[i]
    return cellxor.solve(_cells, arity, p, t, order_h, order_v, w[:5], x)


class _BinaryFuse(CellXorStructure):
    """Binary fuse retrieval of arity ``ARITY``; see the module docstring."""

    _scan = staticmethod(_scan)
    _solve = staticmethod(_solve)

    @classmethod
    def _geometry(cls, num_cells: int) -> tuple[np.uint64, np.uint64, np.uint64]:
        layout_ = parse_num_cells(cls.ARITY, num_cells)
        if layout_ is None:
            raise InvalidInputError(
                f"{num_cells} cells is not a {cls.kind} table size (see docs/format.md)"
            )
        segs, k = layout_
        return np.uint64(segs), np.uint64(k), np.uint64(64 // cls.ARITY)

    @property
    def segment_length(self) -> int:
        return 1 << int(self._p[1])

    @property
    def segment_count(self) -> int:
        """Start segments ``S`` (the table has ``S + arity - 1`` segments)."""
        return int(self._p[0])

    @classmethod
    def _table_size(cls, n: int, attempt: int, cells_per_key: float | None) -> int:
        """``layout``'s size, ``GROWTH`` larger after every ``GROWTH_EVERY`` failed attempts
        (``size_factor`` is too tight at some key counts: at 12,356 keys its 13 segments of
        1,024 cells fail about half the builds 16 times over); a fixed ``cells_per_key``
        overrides both (tests use one to exercise the retries)."""
        f = cells_per_key or size_factor(cls.ARITY, n) * (1 + GROWTH * (attempt // GROWTH_EVERY))
        segs, k = layout(cls.ARITY, n, f)
        return (segs + cls.ARITY - 1) << k

    @classmethod
    def _scratch(cls, n: int, num_cells: int) -> tuple[np.ndarray, ...]:
        segs = num_cells // (1 << int(cls._geometry(num_cells)[1])) - (cls.ARITY - 1)
        return (
            *super()._scratch(n, num_cells),
            np.empty(n, dtype=np.uint64),  # order_h
            np.empty(n, dtype=np.uint32),  # order_v
            np.empty(segs + 1, dtype=np.int64),  # bucket
        )

    @classmethod
    def size_problem(cls, num_cells: int) -> str | None:
        if parse_num_cells(cls.ARITY, num_cells) is None:
            return (
                f"{num_cells} cells is not a {cls.kind} table size: it must be (S + "
                f"{cls.ARITY - 1}) * 2**segment_bits with 1 <= S < 2**32 (docs/format.md)"
            )
        return None

    def _torch_cells(self, h: torch.Tensor, w: Scratch) -> None:
        import torch

        from weightless_core.retrieval.torch_decode import mix_, mulhi32_, srl

        k = int(self._p[1])
        g, tmp, c = w.g, w.tmp, w.cells
        g.copy_(h)
        mix_(g, tmp)
        lmask = (1 << k) - 1
        base = srl(h, 32, w.mask)  # the mask's buffer holds the segment start for a moment
        mulhi32_(base, self.segment_count, tmp).bitwise_left_shift_(k)
        width = 64 // self.ARITY
        torch.bitwise_and(g, lmask, out=c[0]).add_(base)
        for j in range(1, self.ARITY):
            srl(g, width * j, c[j]).bitwise_and_(lmask).add_(base + (j << k))
        torch.bitwise_and(h, (1 << self.t) - 1, out=w.mask)


class BinaryFuse3(_BinaryFuse):
    """3-wise binary fuse retrieval: about 1.125 cells per key for large ``n``."""

    kind = "fuse3"
    code = 2
    min_version = 3
    ARITY = 3


class BinaryFuse4(_BinaryFuse):
    """4-wise binary fuse retrieval: about 1.075 cells per key for large ``n``."""

    kind = "fuse4"
    code = 3
    min_version = 3
    ARITY = 4
