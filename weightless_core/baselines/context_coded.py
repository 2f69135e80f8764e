"""A pruned, clustered tensor stored by a context-adaptive range coder (docs/format.md, kind 7).

Deep Compression codes gaps and codes with Huffman tables that ignore where a position sits;
this coder (``range_coder``) models each position by its neighbours and each code adaptively,
so the runs and blobs a pruned layer keeps cost less than the entropy bound charges for them.
A row's weights are seen as lines of ``width`` (the image a hidden unit reads, a kernel's
taps): the writer tries the divisors of the row length and keeps the smallest stream, so the
geometry is found, not declared. Like Deep Compression it stores the clustered weights exactly,
with no false positives, so hybrid storage can pick it wherever it is the smallest of the three
(table, Deep Compression, this).

Positions are coded over the whole matrix view, or over the live grid after the two liveness
bitmaps (``method.liveness``) where that is smaller: a layer pruned by whole units spends a
bit per row and column instead of a decision per dead position.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from weightless_core.baselines import range_coder
from weightless_core.baselines.deep_compression import check_r
from weightless_core.errors import FormatError, InvalidInputError
from weightless_core.method.layer import _as_float_array, cluster_values
from weightless_core.method.liveness import Liveness, matrix_shape

# Bytes of a kind-7 record body besides the shape, codebook, bitmaps and stream (docs/format.md):
# ndim, r, flags u8 x3, width, nnz and stream length u64 x3.
FIXED_BODY_BYTES = 3 + 8 * 3
FLAG_LIVENESS = 1
MAX_TRIED_WIDTH = 256


@dataclass(frozen=True, eq=False)
class ContextCodedLayer:
    """A weight tensor as the context coder stores it: ``stream`` codes each position of the
    grid (the matrix view, or its live rows and columns when ``live`` is given), each seen in a
    row of lines of ``width``, and the code of each kept one; ``nnz`` kept weights decode to
    ``codebook[code]``, everything else to 0."""

    shape: tuple[int, ...]
    r: int
    codebook: np.ndarray
    nnz: int
    live: Liveness | None
    width: int
    stream: bytes

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the grid the stream codes."""
        return self.live.grid_shape if self.live is not None else matrix_shape(self.shape)

    @property
    def nbytes(self) -> int:
        """Exact bytes of this layer's record body in the file (docs/format.md, kind 7)."""
        bitmaps = self.live.nbytes if self.live is not None else 0
        return (
            FIXED_BODY_BYTES + 8 * len(self.shape) + 4 * (1 << self.r) + bitmaps + len(self.stream)
        )

    @property
    def paper_bits(self) -> int:
        """Size as the papers count a layer: the stream, the float32 codebook and (like a table
        with liveness) the bitmaps; no header."""
        bitmaps = 8 * self.live.nbytes if self.live is not None else 0
        return 8 * len(self.stream) + 32 * (1 << self.r) + bitmaps

    @property
    def paper_nbytes(self) -> int:
        return (self.paper_bits + 7) // 8

    def sizes(self) -> dict[str, int]:
        """Bits of each part of the record body; they sum to ``8 * nbytes``."""
        return {
            "stream": 8 * len(self.stream),
            "codebook": 32 * (1 << self.r),
            "liveness": 8 * self.live.nbytes if self.live is not None else 0,
            "header": 8 * (FIXED_BODY_BYTES + 8 * len(self.shape)),
        }

    def coded_lines(self) -> tuple[np.int64, np.int64, np.ndarray, np.ndarray]:
        """The kernels' ``(rows, cols, row_index, col_index)``: the matrix view's size and the
        live rows and columns (empty arrays: all of them, allocating nothing per row)."""
        rows, cols = matrix_shape(self.shape)
        if self.live is None:
            none = np.zeros(0, dtype=np.int64)
            return np.int64(rows), np.int64(cols), none, none
        live_rows = np.flatnonzero(self.live.rows).astype(np.int64)
        live_cols = np.flatnonzero(self.live.cols).astype(np.int64)
        return np.int64(rows), np.int64(cols), live_rows, live_cols

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, codes)``: the kept flat positions (increasing) and their codes.
        Raises ``FormatError`` naming what a malformed stream gets wrong."""
        status, positions, codes = range_coder.decode_grid(
            np.frombuffer(self.stream, dtype=np.uint8),
            *self.coded_lines(),
            np.int64(self.width),
            np.int64(self.r),
            np.int64(self.nnz),
        )
        if status != range_coder.OK:
            raise FormatError(f"the context-coded stream is malformed: {stream_problem(status)}")
        return positions, codes

    def decode(self) -> np.ndarray:
        """The dense float32 tensor: centroids at the kept positions, 0 elsewhere."""
        positions, codes = self.read()
        out = np.zeros(self.numel, dtype=np.float32)
        out[positions] = np.asarray(self.codebook, dtype=np.float32)[codes]
        return out.reshape(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContextCodedLayer):
            return NotImplemented
        return (
            (self.shape, self.r, self.nnz, self.width)
            == (other.shape, other.r, other.nnz, other.width)
            and np.array_equal(self.codebook, other.codebook)
            and (self.live is None) == (other.live is None)
            and (self.live is None or self.live == other.live)
            and bytes(self.stream) == bytes(other.stream)
        )

    __hash__ = None  # type: ignore[assignment]


def stream_problem(status: int) -> str:
    """What a decoder status other than ``OK`` means, in words."""
    return range_coder.STATUS_TEXT.get(int(status), f"decoder status {int(status)}")


def caps_problem(grid_size: int, nnz: int, stream_len: int) -> str | None:
    """Whether a stream of ``stream_len`` bytes may code this grid (``range_coder``'s caps)."""
    if grid_size > range_coder.POSITIONS_PER_BYTE * stream_len:
        return (
            f"a stream of {stream_len} bytes codes at most "
            f"{range_coder.POSITIONS_PER_BYTE} positions a byte, got a grid of {grid_size}"
        )
    if nnz > range_coder.KEPT_PER_BYTE * stream_len:
        return (
            f"a stream of {stream_len} bytes codes at most {range_coder.KEPT_PER_BYTE} kept "
            f"weights a byte, got nnz = {nnz}"
        )
    return None


def context_code(
    weight: object,
    *,
    r: int,
    codebook: np.ndarray,
    codes: np.ndarray,
    live: bool | None = None,
    width: int | None = None,
) -> ContextCodedLayer | None:
    """Store ``weight``'s kept weights (its non-zeros) with their ``codes`` (an integer array of
    its shape, read at the kept positions) and float32 ``codebook`` of ``2**r`` entries: the
    same clustered weights ``deep_compress_best`` and ``encode_layer`` store, coded over the
    whole matrix view or over the live grid, whichever stream is smaller. None when neither
    fits the caps (a layer so sparse that a stream byte would code over 1,024 positions):
    such a layer is stored another way. ``live`` True or False takes only that grid;
    ``width`` one line width (a divisor of the row length) instead of trying them all."""
    r = check_r(r)
    w = _as_float_array(weight)
    flat = w.ravel()
    nonzero = flat != 0
    cb, values = cluster_values(flat, nonzero, w.shape, r, codebook, codes, 0)
    shape = tuple(int(d) for d in w.shape)
    cols = matrix_shape(shape)[1]
    if width is not None and not (isinstance(width, int) and width >= 1 and cols % width == 0):
        raise InvalidInputError(f"width must divide the row length {cols}, got {width!r}")
    widths = [width] if width is not None else line_widths(cols)
    grids: list[Liveness | None] = [] if live else [None]
    if live is not False and nonzero.any():
        grid = Liveness.of(nonzero, shape)
        if live or grid.grid_size < nonzero.size:
            grids.append(grid)
    options = [_coded(shape, r, cb, nonzero, values, g, d) for g in grids for d in widths]
    fits = [o for o in options if not caps_problem(math.prod(o.grid_shape), o.nnz, len(o.stream))]
    return min(fits, key=lambda o: o.nbytes) if fits else None


def line_widths(cols: int) -> list[int]:
    """The line widths a writer tries for rows of ``cols`` weights: its divisors up to
    ``MAX_TRIED_WIDTH`` (kernel widths, image widths; 1 is a row without geometry)."""
    return [d for d in range(1, min(cols, MAX_TRIED_WIDTH) + 1) if cols % d == 0]


def _coded(
    shape: tuple[int, ...],
    r: int,
    cb: np.ndarray,
    nonzero: np.ndarray,
    values: np.ndarray,
    live: Liveness | None,
    width: int,
) -> ContextCodedLayer:
    """The layer whose kept positions are the flat bool ``nonzero``, with ``values`` the kept
    weights' codes in flat order, coded over the live grid when ``live`` is given."""
    layer = ContextCodedLayer(
        shape=shape, r=r, codebook=cb, nnz=int(nonzero.sum()), live=live, width=width, stream=b""
    )
    stream = range_coder.encode_grid(
        np.ascontiguousarray(nonzero, dtype=np.uint8),
        np.ascontiguousarray(values, dtype=np.uint8),
        *layer.coded_lines(),
        np.int64(width),
        np.int64(r),
    )
    return dataclasses.replace(layer, stream=stream.tobytes())
