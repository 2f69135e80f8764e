"""Liveness masks: the rows and columns of a layer that hold at least one kept weight.

A heavily pruned layer has whole rows (output units) and columns (inputs) with nothing kept.
Stored as two bitmaps, ``rows + cols`` bits, they let a table hold only the live grid: keys are
positions in the ``live_rows x live_cols`` sub-matrix, decoding queries only that grid and
scatters it back, and a dead row or column is exactly zero. False positives, which land on
queried pruned positions at rate ``2**(r-t)``, then never touch a dead unit: fewer of them, and
none that would wake a unit the network learnt to do without.

A tensor of shape ``(d0, d1, ...)`` is seen as the matrix ``(d0, d1 * ...)``: rows are output
units (a Linear's outputs, a convolution's output channels), columns everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from weightless_core.errors import InvalidInputError

if TYPE_CHECKING:
    import torch


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, cols)`` of the matrix view of a tensor of ``shape``."""
    rows = shape[0] if shape else 1
    return rows, math.prod(shape) // rows if rows else 0


@dataclass(frozen=True, eq=False)
class Liveness:
    """Which rows and columns of a tensor's matrix view are live (bool arrays)."""

    rows: np.ndarray
    cols: np.ndarray

    @classmethod
    def of(cls, nonzero: np.ndarray, shape: tuple[int, ...]) -> Liveness:
        """The live rows and columns of the flat bool ``nonzero`` of a tensor of ``shape``."""
        grid = np.asarray(nonzero, dtype=bool).reshape(matrix_shape(shape))
        return cls(grid.any(axis=1), grid.any(axis=0))

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(live rows, live cols)``: the shape of the matrix a table stores."""
        return int(self.rows.sum()), int(self.cols.sum())

    @property
    def grid_size(self) -> int:
        r, c = self.grid_shape
        return r * c

    @property
    def nbytes(self) -> int:
        """Bytes of the two bitmaps in a file."""
        return (self.rows.size + 7) // 8 + (self.cols.size + 7) // 8

    def compact(self, flat: np.ndarray) -> np.ndarray:
        """Entries of the tensor's flat array ``flat`` at live positions, in grid order."""
        m = flat.reshape(self.rows.size, self.cols.size)
        return np.ascontiguousarray(m[np.ix_(self.rows, self.cols)]).ravel()

    def expand(self, grid: np.ndarray, fill: float | int = 0) -> np.ndarray:
        """The full ``(rows, cols)`` matrix with ``grid`` (flat, grid order) at live positions
        and ``fill`` elsewhere, of ``grid``'s dtype."""
        out = np.full((self.rows.size, self.cols.size), fill, dtype=grid.dtype)
        out[np.ix_(self.rows, self.cols)] = grid.reshape(self.grid_shape)
        return out

    def expand_torch(self, grid: torch.Tensor) -> torch.Tensor:
        """``expand`` for a torch tensor, on its device (zeros elsewhere)."""
        import torch

        rows = torch.from_numpy(np.flatnonzero(self.rows)).to(grid.device)
        cols = torch.from_numpy(np.flatnonzero(self.cols)).to(grid.device)
        out = torch.zeros((self.rows.size, self.cols.size), dtype=grid.dtype, device=grid.device)
        out[rows[:, None], cols[None, :]] = grid.reshape(self.grid_shape)
        return out

    def to_bytes(self) -> bytes:
        """Both bitmaps, rows then columns, each packed least significant bit first and padded
        to whole bytes with zero bits (docs/format.md, kind 5)."""
        return _pack(self.rows) + _pack(self.cols)

    @classmethod
    def from_bytes(cls, data: bytes, shape: tuple[int, ...]) -> Liveness:
        """Inverse of ``to_bytes`` for a tensor of ``shape``; refuses set padding bits."""
        rows, cols = matrix_shape(shape)
        nr = (rows + 7) // 8
        if len(data) != nr + (cols + 7) // 8:
            raise InvalidInputError(
                f"liveness bitmaps of {rows} rows and {cols} columns take "
                f"{nr + (cols + 7) // 8} bytes, got {len(data)}"
            )
        return cls(_unpack(data[:nr], rows, "row"), _unpack(data[nr:], cols, "column"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Liveness):
            return NotImplemented
        return np.array_equal(self.rows, other.rows) and np.array_equal(self.cols, other.cols)

    __hash__ = None  # type: ignore[assignment]


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little").tobytes()


def _unpack(data: bytes, count: int, what: str) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[count:].any():
        raise InvalidInputError(f"the {what} bitmap sets padding bits past its {count} entries")
    return bits[:count].astype(bool)
