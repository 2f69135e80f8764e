"""The interface every retrieval structure (static function) implements.

A retrieval structure stores a map ``key -> value`` (keys: flat positions, values: t-bit cells)
without storing the keys. Querying a stored key returns its value exactly; querying any other key
returns bits that are uniform over ``[0, 2**t)``. The layer encoder relies only on this
contract, so Bloomier, binary fuse or ribbon layouts plug in behind the same five verbs:
build, query, decode_dense, count_in_range and (de)serialisation of the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np

from weightless_core import bitpack
from weightless_core.bitpack import MAX_T
from weightless_core.errors import InvalidInputError
from weightless_core.hashing import seed_key
from weightless_core.retrieval import narrow

__all__ = ["MAX_T", "RetrievalStructure", "check_t", "checked_inputs"]


class RetrievalStructure(ABC):
    """A built, immutable table; subclasses set ``kind`` (name) and ``code`` (file format id)."""

    kind: ClassVar[str]
    code: ClassVar[int]

    t: int
    seed: int
    num_cells: int
    attempts: int
    _words: np.ndarray  # the packed stream as padded uint32 words (``bitpack``)

    @classmethod
    @abstractmethod
    def build(
        cls, keys: np.ndarray, values: np.ndarray, *, t: int, seed: int, max_attempts: int
    ) -> Self:
        """Build from distinct uint64 ``keys`` and ``values < 2**t``; retry with derived seeds.

        Raises ``ConstructionError`` after ``max_attempts`` failed attempts.
        """

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        self.t = t
        self.seed = seed
        self.num_cells = num_cells
        self.attempts = attempts
        self._words = words

    @classmethod
    @abstractmethod
    def size_problem(cls, num_cells: int) -> str | None:
        """Why no table of this structure has ``num_cells`` cells, or None if one may."""

    @classmethod
    def from_table(cls, *, t: int, seed: int, num_cells: int, table: bytes) -> Self:
        """Rebuild from stored parameters and the packed table (as written by ``table_bytes``)."""
        check_t(t)
        seed_key(seed)  # validates the seed
        problem = cls.size_problem(num_cells)
        if problem:
            raise InvalidInputError(problem)
        if len(table) != bitpack.packed_nbytes(num_cells, t):
            raise InvalidInputError(
                f"table of {num_cells} cells of {t} bits needs "
                f"{bitpack.packed_nbytes(num_cells, t)} bytes, got {len(table)}"
            )
        return cls(
            t=t, seed=seed, num_cells=num_cells, words=bitpack.bytes_to_words(table, num_cells, t)
        )

    def table_bytes(self) -> bytes:
        """The packed table, exactly as stored in a file."""
        return bitpack.words_to_bytes(self._words, self.num_cells, self.t)

    def cells(self) -> np.ndarray:
        """The table unpacked to one uint32 per cell (for inspection and tests)."""
        return bitpack.unpack(self._words, self.num_cells, self.t)

    @abstractmethod
    def query(self, keys: np.ndarray) -> np.ndarray:
        """t-bit results (uint32) for uint64 ``keys`` of any shape."""

    @abstractmethod
    def decode_dense(self, out: np.ndarray, codebook: np.ndarray) -> None:
        """Fill 1-D float32 ``out`` with the decoded value of every position ``0..out.size-1``.

        A result ``q < len(codebook)`` decodes to ``codebook[q]``; anything else to 0.
        """

    @abstractmethod
    def count_in_range(self, pruned: np.ndarray, limit: int) -> int:
        """How many positions ``i`` with ``pruned[i]`` query to a value ``< limit``."""

    def narrow_cells(self) -> np.ndarray:
        """One uint8, uint16 or uint32 per cell (the narrowest that holds t bits): what
        decoders on other devices copy there instead of the packed stream."""
        cells = narrow.narrow_cells(self._words, self.num_cells, self.t)
        return cells if cells is not None else bitpack.unpack(self._words, self.num_cells, self.t)

    @property
    def table_nbytes(self) -> int:
        """Bytes of the packed table in a file."""
        return (self.num_cells * self.t + 7) // 8

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetrievalStructure):
            return NotImplemented
        return (
            self.kind == other.kind
            and (self.t, self.seed, self.num_cells) == (other.t, other.seed, other.num_cells)
            and self.table_bytes() == other.table_bytes()
        )

    __hash__ = None  # type: ignore[assignment]


def check_t(t: int) -> None:
    if not 1 <= t <= MAX_T:
        raise InvalidInputError(f"t (bits per cell) must be in 1..{MAX_T}, got {t}")


def checked_inputs(
    keys: np.ndarray, values: np.ndarray, *, t: int, seed: int, max_keys: int, max_attempts: int
) -> tuple[np.ndarray, np.ndarray]:
    """``build``'s inputs validated: flat uint64 keys and uint32 values ``< 2**t``, as many of
    each (at most ``max_keys``), a valid seed and ``max_attempts >= 1``."""
    check_t(t)
    seed_key(seed)  # validates the seed
    keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
    values = np.ascontiguousarray(values).ravel()
    if keys.size != values.size:
        raise InvalidInputError(f"{keys.size} keys but {values.size} values")
    if keys.size > max_keys:
        raise InvalidInputError(f"at most {max_keys} keys per table, got {keys.size}")
    if values.size:
        if values.dtype.kind not in "iub":
            raise InvalidInputError(f"values must be integers, got dtype {values.dtype}")
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >> t:
            bad = lo if lo < 0 else hi
            raise InvalidInputError(f"values must lie in [0, 2**t = {1 << t}), got {bad}")
    if max_attempts < 1:
        raise InvalidInputError(f"max_attempts must be >= 1, got {max_attempts}")
    return keys, np.ascontiguousarray(values.astype(np.uint32, copy=False))
