"""What the Bloomier filter and binary fuse share: a key's value is the xor of a few cells.

A structure of this family (``CellXorStructure``) is defined by one inline numba function,
``cells(h, p)``: the mask bits of the key whose hash is ``h`` (callers keep the low ``t``)
followed by its ``ARITY`` cells, as one tuple of uint64 (binary fuse returns four cells
whatever its arity: no branch in the hashing loop). ``p`` is a tuple of the structure's
parameters (its geometry). Everything else is here, once: chunked queries and decodes
(``scan``) and construction by peeling the key hypergraph (``solve``), which take that function
as their first argument; numba specialises them on it and inlines it. A flat tuple keeps a
key's cells in registers (writing them to a scratch array made peeling about 10 % slower).

A structure module instantiates ``scan`` and ``solve`` in two short kernels of its own,
``_scan`` and ``_solve``: numba caches a kernel on disk next to its source, and a kernel taking
``cells`` as an argument from Python would not be cached at all. numba checks only that source
file for changes, so after editing this module clear the structures' ``__pycache__``.

Queries (``scan``). Done one key at a time, the hash arithmetic sits between the random table
reads and the CPU keeps few reads in flight. The kernels work in chunks instead: one pass hashes
a chunk to cell indices and masks (plain arithmetic that vectorises), then one pass per cell of
a key xors in that cell of every key (nothing but independent loads), then a last pass maps the
results to outputs. The table is either the packed stream (uint32 words: two word loads, a
shift) or one narrow cell per element (``narrow.narrow_cells``: one load), chosen by its dtype.

Construction (``solve``). Each cell has one 16-byte slot (two uint64 in ``slots``): the xor of
the hashes of the keys touching it, and their count (low 32 bits) next to the xor of their
values (high 32 bits). A cell of count 1 thus holds its last key's hash and value, from which
its cells and mask follow: peeling needs no per-key arrays, and each touch of a cell is one
cache line. The random accesses are prefetched ``AHEAD`` iterations early, which is what makes
construction fast.

Peel order (it fixes the table bytes, which the golden files pin): cells of count 1 are queued
first in ascending cell order, then first in, first out, each newly freed cell at the back of
the queue (a key's cells in order ``j = 0 .. ARITY-1``); a queued cell whose count is no longer
1 when it comes up is skipped. Cells are assigned in reverse peel order.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from weightless_core._jit import inline, prange, prefetch
from weightless_core.retrieval import narrow
from weightless_core.retrieval.base import RetrievalStructure, mix

if TYPE_CHECKING:
    import torch

    from weightless_core.retrieval.torch_decode import Scratch, TorchLookup

QUERY, DECODE, COUNT = 0, 1, 2
"""What ``scan`` does with each result: store it, decode it through a codebook, count it."""

CHUNK = 2048
"""Positions per parallel task: four uint64 index rows and the results, 80 KiB, in L2."""

AHEAD = 16
"""How many iterations ahead the construction kernels prefetch the cells they will touch."""

_ONE_LUT = np.zeros(1, dtype=np.float32)
_NO_KEYS = np.zeros(0, dtype=np.uint64)
_NO_MASK = np.zeros(0, dtype=np.bool_)
_NO_Q = np.zeros(0, dtype=np.uint32)
_NO_VALUES = np.zeros(0, dtype=np.float32)


# ------------------------------------------------------------------------------ queries


@inline
def _gather(table: np.ndarray, index: np.ndarray, acc: np.ndarray, m: int, t: np.uint64) -> None:
    """``acc[j] ^=`` cell ``index[j]`` of ``table`` for ``j < m`` (packed cells: their stream
    bits from ``index[j] * t`` on, at least 33 of them; callers mask)."""
    if table.itemsize == 4:  # the packed stream (narrow cells are 1 or 2 bytes)
        for j in range(m):
            p = index[j] * t
            w = p >> np.uint64(5)
            pair = np.uint64(table[w]) | (np.uint64(table[w + np.uint64(1)]) << np.uint64(32))
            acc[j] ^= pair >> (p & np.uint64(31))
    else:
        for j in range(m):
            acc[j] ^= np.uint64(table[index[j]])


@inline
def scan(cells, mode, arity, table, sk, p, t, job) -> int:
    """Every position (``QUERY``: every key) of ``job = (keys, mask, limit, lut, out_q,
    out_v)``: ``QUERY`` stores ``q(keys[i])`` in ``out_q``, ``DECODE`` writes
    ``lut[min(q(i), len(lut) - 1)]`` to ``out_v`` (``lut`` is the codebook and a 0.0: no
    data-dependent branch), ``COUNT`` returns how many ``i`` with ``mask[i]`` have
    ``q(i) < limit``. Returns 0 unless counting."""
    keys, mask, limit, lut, out_q, out_v = job
    tt = np.uint64(t)
    tmask = (np.uint64(1) << tt) - np.uint64(1)
    last = np.uint64(lut.size - 1)
    n = keys.size if mode == QUERY else (out_v.size if mode == DECODE else mask.size)
    total = 0
    for c in prange((n + CHUNK - 1) // CHUNK):
        start = c * CHUNK
        m = min(CHUNK, n - start)
        index = np.empty((4, CHUNK), dtype=np.uint64)
        acc = np.empty(CHUNK, dtype=np.uint64)
        if mode == QUERY:
            for j in range(m):
                cs = cells(mix(np.uint64(keys[start + j]) + sk), p)
                acc[j] = cs[0]
                for r in range(1, len(cs)):
                    index[r - 1, j] = cs[r]
        else:
            first = np.uint64(start) + sk
            for j in range(m):
                cs = cells(mix(first + np.uint64(j)), p)
                acc[j] = cs[0]
                for r in range(1, len(cs)):
                    index[r - 1, j] = cs[r]
        for r in range(arity):
            _gather(table, index[r], acc, m, tt)
        hits = 0
        if mode == QUERY:
            for j in range(m):
                out_q[start + j] = np.uint32(acc[j] & tmask)
        elif mode == DECODE:
            for j in range(m):
                out_v[start + j] = lut[min(acc[j] & tmask, last)]
        else:
            for j in range(m):
                hits += mask[start + j] and (acc[j] & tmask) < limit
        total += hits
    return total


# ------------------------------------------------------------------------------ construction


@inline
def _add(cells, arity, p, hashes, values, slots) -> None:
    """Every (hash, value) pair into the zeroed ``slots``."""
    one = np.uint64(1)
    n = hashes.size
    for i in range(n):
        if i + AHEAD < n:
            ca = cells(hashes[i + AHEAD], p)
            for j in range(arity):
                prefetch(slots, ca[j + 1] + ca[j + 1])
        h = hashes[i]
        cs = cells(h, p)
        tag = np.uint64(values[i]) << np.uint64(32)
        for j in range(arity):
            s = cs[j + 1] + cs[j + 1]
            slots[s] ^= h
            slots[s + one] = (slots[s + one] + one) ^ tag


@inline
def _peel(cells, arity, p, slots, queue, peel_h, peel_v, peel_c) -> int:
    """Peel in the documented order; returns how many keys were peeled (all of them: success)."""
    one = np.uint64(1)
    low = np.uint64(0xFFFFFFFF)
    qn = 0
    for c in range(queue.size):
        if slots[2 * c + 1] & low == one:
            queue[qn] = c
            qn += 1
    sn = 0
    qi = 0
    while qi < qn:
        # Two-stage prefetch: the slot of a cell 2*AHEAD places ahead in the queue, and the
        # cells of the key named by the cell AHEAD places ahead (its slot is cached by now).
        if qi + 2 * AHEAD < qn:
            prefetch(slots, 2 * queue[qi + 2 * AHEAD])
        if qi + AHEAD < qn:
            e = 2 * queue[qi + AHEAD]
            if slots[e + 1] & low == one:
                ca = cells(slots[e], p)
                for j in range(arity):
                    prefetch(slots, ca[j + 1] + ca[j + 1])
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
        cs = cells(h, p)
        for j in range(arity):
            d = cs[j + 1]
            s = d + d
            slots[s] ^= h
            cnt = (slots[s + one] - one) ^ tag
            slots[s + one] = cnt
            if cnt & low == one:
                queue[qn] = d
                qn += 1
    return sn


@inline
def _assign(cells, arity, p, t, peel_h, peel_v, peel_c, sn, x) -> None:
    """Assign cells in reverse peel order so every key's query returns its value."""
    tmask = (np.uint64(1) << np.uint64(t)) - np.uint64(1)
    for s in range(sn - 1, -1, -1):
        if s >= AHEAD:
            ca = cells(peel_h[s - AHEAD], p)
            for j in range(arity):
                prefetch(x, ca[j + 1])
        # x[peel_c[s]] is still 0 here (each cell is peeled at most once), so xoring every cell
        # of the key, the peeled one included, is the same as xoring the others.
        cs = cells(peel_h[s], p)
        v = (np.uint64(peel_v[s]) ^ cs[0]) & tmask
        for j in range(1, arity + 1):
            v ^= np.uint64(x[cs[j]])
        x[peel_c[s]] = np.uint32(v)


@inline
def solve(cells, arity, p, t, hashes, values, w, x) -> bool:
    """Fill the zeroed ``x`` so that the key of every ``hashes[i]`` queries to ``values[i]``;
    False when peeling fails. ``w = (slots, queue, peel_h, peel_v, peel_c)``: slots zeroed, a
    queue of one entry per cell, and room for every key (``peel_h`` may be ``hashes``)."""
    slots, queue, peel_h, peel_v, peel_c = w
    _add(cells, arity, p, hashes, values, slots)
    sn = _peel(cells, arity, p, slots, queue, peel_h, peel_v, peel_c)
    if sn != hashes.size:
        return False
    _assign(cells, arity, p, t, peel_h, peel_v, peel_c, sn, x)
    return True


# ------------------------------------------------------------------------------ the structure


class CellXorStructure(RetrievalStructure):
    """A structure whose query xors ``ARITY`` cells and a mask (see the module docstring).

    Subclasses set ``ARITY`` and their two kernels ``_scan`` and ``_solve`` (static methods),
    and give ``_geometry`` (the ``p`` their ``cells`` reads), ``_table_size``,
    ``size_problem`` and, for torch decoding, ``_torch_cells``.
    """

    ARITY: ClassVar[int]
    _scan: ClassVar[Callable[..., int]]
    _solve: ClassVar[Callable[..., bool]]

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        super().__init__(t=t, seed=seed, num_cells=num_cells, words=words, attempts=attempts)
        self._p = self._geometry(num_cells)

    @classmethod
    @abstractmethod
    def _geometry(cls, num_cells: int) -> tuple[Any, ...]:
        """The ``p`` that ``cells`` reads for a table of ``num_cells`` cells (numpy scalars)."""

    @classmethod
    def _scratch(cls, n: int, num_cells: int) -> tuple[np.ndarray, ...]:
        """Work arrays of one construction, reused across attempts: ``solve``'s ``w`` (the
        keys' hashes as ``peel_h``), then the structure's own (allocated by numpy, which asks
        the kernel for huge pages on large arrays: fewer TLB misses on random accesses)."""
        return (
            np.empty(2 * num_cells, dtype=np.uint64),  # slots
            np.empty(num_cells, dtype=np.int64),  # queue
            np.empty(n, dtype=np.uint64),  # hashes, then the peeled keys' hashes
            np.empty(n, dtype=np.uint32),  # peel_v
            np.empty(n, dtype=np.int64),  # peel_c
        )

    @classmethod
    def _attempt(
        cls, keys: np.ndarray, values: np.ndarray, sk: np.uint64, t: int, scratch: Any
    ) -> np.ndarray | None:
        slots, queue = scratch[0], scratch[1]  # one slot pair and one queue entry per cell
        slots.fill(0)
        x = np.zeros(queue.size, dtype=np.uint32)
        p = cls._geometry(queue.size)
        ok = cls._solve(np.int64(cls.ARITY), keys, values, sk, p, np.int64(t), scratch, x)
        return x if ok else None

    def _run(self, mode: int, table: np.ndarray, job: tuple[Any, ...]) -> int:
        arity, t = np.int64(self.ARITY), np.int64(self.t)
        return self._scan(mode, arity, table, self._sk, self._p, t, job)

    def _query_into(self, keys: np.ndarray, out: np.ndarray) -> None:
        self._run(QUERY, self._words, (keys, _NO_MASK, np.uint64(0), _ONE_LUT, out, _NO_VALUES))

    def _decode_into(self, out: np.ndarray, lut: np.ndarray) -> None:
        cells = narrow.narrow_cells(self._words, self.num_cells, self.t)
        table = self._words if cells is None else cells
        self._run(DECODE, table, (_NO_KEYS, _NO_MASK, np.uint64(0), lut, _NO_Q, out))

    def decode_packed(self, out: np.ndarray, codebook: np.ndarray) -> None:
        """``decode_dense`` from the packed stream, never the unpacked cells (benchmarks)."""
        narrow.check_dense_out(out)
        lut = narrow.decode_table(codebook)
        self._run(DECODE, self._words, (_NO_KEYS, _NO_MASK, np.uint64(0), lut, _NO_Q, out))

    def _count(self, mask: np.ndarray, limit: np.uint64) -> int:
        return self._run(COUNT, self._words, (_NO_KEYS, mask, limit, _ONE_LUT, _NO_Q, _NO_VALUES))

    def torch_lookup(self, device: torch.device) -> TorchLookup:
        from weightless_core.retrieval.torch_decode import TorchLookup, device_cells

        return TorchLookup(self, device_cells(self, device), self.ARITY, self._torch_query)

    def _torch_query(self, table: torch.Tensor, w: Scratch) -> torch.Tensor:
        """int64 t-bit results (in ``w.mask``) of the hashes ``w.h``; ``table`` is the cells."""
        import torch

        self._torch_cells(w.h, w)
        acc = torch.index_select(table, 0, w.cells[0])  # faster than ``table[i]`` on CPU
        for c in w.cells[1:]:
            acc.bitwise_xor_(torch.index_select(table, 0, c))
        if acc.dtype != torch.int64:
            acc = acc.to(torch.int64).bitwise_and_((1 << self.t) - 1)
        return w.mask.bitwise_xor_(acc)

    @abstractmethod
    def _torch_cells(self, h: torch.Tensor, w: Scratch) -> None:
        """In torch, the cells of hashes ``h`` into ``w.cells`` and their t-bit masks into
        ``w.mask``, on int64 bits (``torch_decode`` has the uint64 helpers)."""
