"""The interface every retrieval structure (static function) implements, and what they share.

A retrieval structure stores a map ``key -> value`` (keys: flat positions, values: t-bit cells)
without storing the keys. Querying a stored key returns its value exactly; querying any other key
returns bits that are uniform over ``[0, 2**t)``. The layer encoder relies only on this
contract, so Bloomier, binary fuse or ribbon layouts plug in behind the same verbs: build,
query, decode_dense, count_in_range and (de)serialisation of the table.

Those verbs live here, once: input checks, the retry loop of ``build`` (derived seeds, the
error when every attempt fails), the file round trip and the numpy side of the queries. A
structure supplies only what is its own, through small hooks: its table size per attempt
(``_table_size``), one construction attempt (``_attempt``), the stored sizes it accepts
(``size_problem``), its numba kernels (``_query_into``, ``_decode_into``, ``_count``) and, if
it decodes in torch, ``torch_lookup``. Structures whose query xors a few cells and a mask
(Bloomier, binary fuse) need even less: see ``cellxor``.

Adding a structure is one module in this package (a subclass with a new ``kind`` and file
format ``code``, listed in ``STRUCTURES`` in ``__init__``), its section in ``docs/format.md``
and a golden file that pins its bytes; nothing else switches on the kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from weightless_core import bitpack
from weightless_core._jit import inline
from weightless_core.bitpack import MAX_T
from weightless_core.errors import ConstructionError, InvalidInputError
from weightless_core.retrieval import narrow
from weightless_core.retrieval.hashing import MIX1, MIX2, derive_seed, seed_key

if TYPE_CHECKING:
    import torch

    from weightless_core.retrieval.torch_decode import TorchLookup

__all__ = ["MAX_T", "RetrievalStructure", "check_t", "checked_inputs", "mix", "wrapping"]


class RetrievalStructure(ABC):
    """A built, immutable table; subclasses set ``kind`` (name), ``code`` (file format id) and
    ``min_version`` (the first file format version that has the code)."""

    kind: ClassVar[str]
    code: ClassVar[int]
    min_version: ClassVar[int]
    MAX_KEYS: ClassVar[int] = (1 << 32) - 1
    """Most keys one table holds (per-cell key counts and hashed starts are 32-bit)."""

    t: int
    seed: int
    num_cells: int
    attempts: int
    _words: np.ndarray  # the packed stream as padded uint32 words (``bitpack``)
    _sk: np.uint64  # the hash constant of ``seed`` (``hashing.seed_key``)

    def __init__(self, *, t: int, seed: int, num_cells: int, words: np.ndarray, attempts: int = 1):
        self.t = t
        self.seed = seed
        self.num_cells = num_cells
        self.attempts = attempts
        self._words = words
        self._sk = np.uint64(seed_key(seed))

    # -------------------------------------------------------------------------- construction

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
        """Build from distinct uint64 ``keys`` and ``values < 2**t``; retry with derived seeds.

        Attempt ``a`` uses seed ``derive_seed(seed, a)`` and ``_table_size`` cells;
        ``cells_per_key`` overrides the structure's sizing (tests lower it below the
        construction threshold to exercise the retries). Raises ``ConstructionError`` after
        ``max_attempts`` failed attempts, or at once for duplicate keys (no seed separates two
        equal keys, and a solver could even accept them when their values agree).
        """
        keys, values = checked_inputs(
            keys, values, t=t, seed=seed, max_keys=cls.MAX_KEYS, max_attempts=max_attempts
        )
        if cells_per_key is not None and not cells_per_key > 0:
            raise InvalidInputError(f"cells_per_key must be > 0, got {cells_per_key}")
        dup = _duplicates(keys)
        if dup:
            raise ConstructionError(
                f"{cls.kind} construction refused {keys.size} keys: {dup} keys are duplicates"
            )
        scratch: Any = None
        num_cells = scratch_cells = 0
        for attempt in range(max_attempts):
            num_cells = cls._table_size(keys.size, attempt, cells_per_key)
            if scratch_cells != num_cells:
                scratch, scratch_cells = cls._scratch(keys.size, num_cells), num_cells
            s = derive_seed(seed, attempt)
            with wrapping():
                cells = cls._attempt(keys, values, np.uint64(seed_key(s)), t, scratch)
            if cells is not None:
                words = bitpack.pack(cells, t)
                return cls(t=t, seed=s, num_cells=num_cells, words=words, attempts=attempt + 1)
        raise ConstructionError(
            f"{cls.kind} construction failed all {max_attempts} attempts for {keys.size} keys "
            f"({num_cells} cells at the last): the table is too small for these keys"
        )

    @classmethod
    @abstractmethod
    def _table_size(cls, n: int, attempt: int, cells_per_key: float | None) -> int:
        """Cells of attempt ``attempt`` for ``n`` keys (``cells_per_key`` None: the default)."""

    @classmethod
    def _scratch(cls, n: int, num_cells: int) -> Any:
        """What attempts at this size work in, reused while the size stays: by default only
        the size; work arrays where allocating them per attempt would cost."""
        return num_cells

    @classmethod
    @abstractmethod
    def _attempt(
        cls, keys: np.ndarray, values: np.ndarray, sk: np.uint64, t: int, scratch: Any
    ) -> np.ndarray | None:
        """The cell values (uint32) for hash constant ``sk``, or None when this attempt fails.
        ``keys`` (uint64) and ``values`` (uint32) are 1-D, checked and distinct."""

    # -------------------------------------------------------------------------- stored tables

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

    # -------------------------------------------------------------------------- queries

    def query(self, keys: np.ndarray) -> np.ndarray:
        """t-bit results (uint32) for uint64 ``keys`` of any shape."""
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.empty(flat.size, dtype=np.uint32)
        with wrapping():
            self._query_into(flat, out)
        return out.reshape(np.shape(keys))

    def decode_dense(self, out: np.ndarray, codebook: np.ndarray) -> None:
        """Fill 1-D float32 ``out`` with the decoded value of every position ``0..out.size-1``.

        A result ``q < len(codebook)`` decodes to ``codebook[q]``; anything else to 0.
        """
        narrow.check_dense_out(out)
        lut = narrow.decode_table(codebook)
        with wrapping():
            self._decode_into(out, lut)

    def count_in_range(self, pruned: np.ndarray, limit: int) -> int:
        """How many positions ``i`` with ``pruned[i]`` query to a value ``< limit``."""
        if limit < 0:
            raise InvalidInputError(f"limit must be >= 0, got {limit}")
        mask = np.ascontiguousarray(pruned, dtype=np.bool_).ravel()
        with wrapping():
            return int(self._count(mask, np.uint64(min(int(limit), 1 << MAX_T))))

    @abstractmethod
    def _query_into(self, keys: np.ndarray, out: np.ndarray) -> None:
        """``out[i]`` = the result of ``keys[i]`` (flat uint64 keys, uint32 ``out``)."""

    @abstractmethod
    def _decode_into(self, out: np.ndarray, lut: np.ndarray) -> None:
        """``out[i]`` = ``lut[min(q(i), len(lut) - 1)]``: ``lut`` is the codebook and a 0.0."""

    @abstractmethod
    def _count(self, mask: np.ndarray, limit: np.uint64) -> int:
        """How many ``i`` with ``mask[i]`` have ``q(i) < limit``."""

    def torch_lookup(self, device: torch.device) -> TorchLookup:
        """This structure's query in torch on ``device`` (``torch_decode``), if it has one."""
        raise InvalidInputError(f"no torch decoder for structure {self.kind!r}")

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


@inline
def mix(z: np.uint64) -> np.uint64:
    """``hashing.mix64`` inside kernels."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def wrapping() -> np.errstate:
    """Uncompiled kernels do their mod-2**64 arithmetic on numpy scalars, which warn on the
    (intended) wrap-around; this silences that. Compiled kernels never warn."""
    return np.errstate(over="ignore")


def _duplicates(keys: np.ndarray) -> int:
    """How many keys repeat an earlier one (a linear check when they are sorted, as a layer's
    positions are)."""
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return 0
    return int(keys.size - np.unique(keys).size)


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
