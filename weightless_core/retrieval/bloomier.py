"""The Bloomier filter of the Weightless paper: 3 cells per key plus a t-bit mask.

Layout (``docs/format.md`` is normative): ``m = 3*B`` cells of ``t`` bits in three equal blocks,
``B = ceil((32 + 1.23*n) / 3)``. For key ``k`` with ``h = hash64(seed, k)``:

* block-local positions ``r_j = lo32(rotl64(h, 21*j))`` for ``j = 0, 1, 2``,
* cells ``c_j = j*B + (r_j * B >> 32)``, one per block, so always distinct,
* mask ``M = (h ^ (h >> 32)) & (2**t - 1)``,
* query ``q(k) = M ^ X[c_0] ^ X[c_1] ^ X[c_2]``.

Construction peels the 3-uniform hypergraph of the keys (a cell touched by exactly one remaining
key names that key) and assigns cells in reverse peel order (``cellxor``, which also fixes the
peel order the golden file pins). Peeling succeeds with high probability when ``m/n >= 1.222``;
a failure retries with a derived seed.

All but the layout is shared with binary fuse (``cellxor``): this module is ``_cells`` and the
parameters it reads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from weightless_core._jit import inline, njit
from weightless_core.retrieval import cellxor
from weightless_core.retrieval.base import mix
from weightless_core.retrieval.cellxor import CellXorStructure

if TYPE_CHECKING:
    import torch

    from weightless_core.retrieval.torch_decode import Scratch

CELLS_PER_KEY = 1.23
EXTRA_CELLS = 32


def block_length(n: int, cells_per_key: float = CELLS_PER_KEY) -> int:
    """Cells per block ``B`` for ``n`` keys (the table has ``3*B`` cells)."""
    return math.ceil((EXTRA_CELLS + cells_per_key * n) / 3)


@inline
def _cells(h: np.uint64, p: tuple[np.uint64]) -> tuple[np.uint64, ...]:
    """The mask bits and cells ``c_0, c_1, c_2`` of hash ``h`` (``p = (B,)``; see ``cellxor``).

    ``B`` is masked to 32 bits (it fits), so that every product is 32 x 32 bits: one SIMD
    multiply when the hashing loop vectorises.
    """
    lo = np.uint64(0xFFFFFFFF)
    b = p[0] & lo
    r0 = h & lo
    r1 = ((h << np.uint64(21)) | (h >> np.uint64(43))) & lo
    r2 = ((h << np.uint64(42)) | (h >> np.uint64(22))) & lo
    c0 = (r0 * b) >> np.uint64(32)
    c1 = b + ((r1 * b) >> np.uint64(32))
    c2 = b + b + ((r2 * b) >> np.uint64(32))
    return h ^ (h >> np.uint64(32)), c0, c1, c2


@njit(parallel=True)
def _scan(mode, arity, table, sk, p, t, job) -> int:
    return cellxor.scan(_cells, mode, arity, table, sk, p, t, job)


@njit()
def _solve(arity, keys, values, sk, p, t, w, x) -> bool:
    """``cellxor.solve`` on the keys' hashes, in key order (scratch ``w`` as ``_scratch``)."""
    hashes = w[2]
    for i in range(keys.size):
        hashes[i] = mix(np.uint64(keys[i]) + sk)
    return cellxor.solve(_cells, arity, p, t, hashes, values, w, x)


class BloomierFilter(CellXorStructure):
    """Bloomier filter with a t-bit mask (k=3, three blocks); see the module docstring."""

    kind = "bloomier"
    code = 1
    min_version = 1
    ARITY = 3
    _scan = staticmethod(_scan)
    _solve = staticmethod(_solve)

    @classmethod
    def _geometry(cls, num_cells: int) -> tuple[np.uint64]:
        return (np.uint64(num_cells // 3),)

    @classmethod
    def _table_size(cls, n: int, attempt: int, cells_per_key: float | None) -> int:
        return 3 * block_length(n, cells_per_key or CELLS_PER_KEY)

    @classmethod
    def size_problem(cls, num_cells: int) -> str | None:
        if num_cells < 3 or num_cells % 3 or num_cells // 3 > cls.MAX_KEYS:
            return f"a Bloomier table has 3*B cells with 1 <= B <= {cls.MAX_KEYS}, got {num_cells}"
        return None

    def _torch_cells(self, h: torch.Tensor, w: Scratch) -> None:
        import torch

        from weightless_core.retrieval.torch_decode import LO32, mulhi32_, srl

        b = self.num_cells // 3
        c, tmp = w.cells, w.tmp
        torch.bitwise_and(h, LO32, out=c[0])
        mulhi32_(c[0], b, tmp)
        # low 32 bits of rotl(h, 21), then of rotl(h, 42)
        torch.bitwise_and(h, 0x7FF, out=c[1]).bitwise_left_shift_(21)
        c[1].bitwise_or_(srl(h, 43, tmp))
        mulhi32_(c[1], b, tmp).add_(b)
        srl(h, 22, c[2]).bitwise_and_(LO32)
        mulhi32_(c[2], b, tmp).add_(2 * b)
        srl(h, 32, w.mask).bitwise_xor_(h).bitwise_and_((1 << self.t) - 1)
