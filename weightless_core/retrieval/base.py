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
from weightless_core.retrieval import narrow

__all__ = ["MAX_T", "RetrievalStructure"]


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

    @classmethod
    @abstractmethod
    def from_table(cls, *, t: int, seed: int, num_cells: int, table: bytes) -> Self:
        """Rebuild from stored parameters and the packed table (as written by ``table_bytes``)."""

    @abstractmethod
    def table_bytes(self) -> bytes:
        """The packed table, exactly as stored in a file."""

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
