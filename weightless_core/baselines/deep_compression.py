"""Deep Compression (Han, Mao, Dally, ICLR 2016) as a baseline: a sparse index plus Huffman.

A pruned, clustered tensor is stored as a list of *entries* over its flattened positions (C
order). Each entry holds a cluster code (``0 .. 2**r - 1``, or the *filler* symbol ``2**r``) and
the number of positions skipped since the previous entry (for the first: since position 0), a
gap of ``index_bits`` = b bits: entry positions are ``p_k = p_{k-1} + 1 + gap_k`` with
``p_{-1} = -1``. A skip longer than ``2**b - 1`` is bridged by filler entries with the largest
gap, which decode to 0. Positions after the last non-zero need no entry. Both streams (codes,
gaps) are then Huffman coded, as in the paper; b defaults to the paper's 5 bits for fully
connected (and 1-D) tensors and 8 for convolutions.

Unlike the paper's CSR layout this keeps no row-pointer array (the whole tensor is one run of
gaps), which only makes the baseline smaller, i.e. conservative in Deep Compression's favour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from weightless_core.baselines import huffman
from weightless_core.errors import FormatError, InvalidInputError
from weightless_core.method.layer import MAX_R, _as_float_array, cluster_values

MAX_INDEX_BITS = 12  # 2**12 gap symbols = huffman.MAX_SYMBOLS
# Bytes of a kind-4 record body besides the shape, codebook, length tables and payload (see
# docs/format.md): ndim u8, r/index_bits u8 x2, nnz/entries/code_bits/gap_bits u64 x4.
_FIXED_BODY_BYTES = 1 + 2 + 8 * 4


@dataclass(frozen=True, eq=False)
class DeepCompressedLayer:
    """A weight tensor as Deep Compression stores it (docs/format.md, kind 4).

    ``code_lengths`` are the Huffman lengths of the ``2**r + 1`` code symbols (the last is the
    filler), ``gap_lengths`` those of the ``2**index_bits`` gap symbols. ``payload`` is the code
    stream then the gap stream, each padded to a whole byte; ``code_bits``/``gap_bits`` are
    their exact lengths. ``entries - nnz`` filler entries bridge the long gaps.
    """

    shape: tuple[int, ...]
    r: int
    index_bits: int
    codebook: np.ndarray
    nnz: int
    entries: int
    code_lengths: np.ndarray
    gap_lengths: np.ndarray
    code_bits: int
    gap_bits: int
    payload: bytes

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def fillers(self) -> int:
        return self.entries - self.nnz

    @property
    def nbytes(self) -> int:
        """Exact bytes of this layer's record body in the file (docs/format.md, kind 4)."""
        return (
            _FIXED_BODY_BYTES
            + 8 * len(self.shape)
            + 4 * (1 << self.r)
            + (1 << self.r)
            + 1
            + (1 << self.index_bits)
            + len(self.payload)
        )

    @property
    def paper_bits(self) -> int:
        """Size as the paper counts it: coded codes + coded index + float32 codebook."""
        return self.code_bits + self.gap_bits + 32 * (1 << self.r)

    @property
    def paper_nbytes(self) -> int:
        """``paper_bits`` in whole bytes."""
        return (self.paper_bits + 7) // 8

    def sizes(self) -> dict[str, int]:
        """Bits of each part of the record body; they sum to ``8 * nbytes``.

        ``codes``, ``index`` and ``codebook`` are what ``paper_bits`` counts; ``tables`` (the
        Huffman lengths), ``header`` (shape and parameters) and ``padding`` (stream ends) are
        what a real file adds.
        """
        k = 1 << self.r
        return {
            "codes": self.code_bits,
            "index": self.gap_bits,
            "codebook": 32 * k,
            "tables": 8 * (k + 1 + (1 << self.index_bits)),
            "header": 8 * (_FIXED_BODY_BYTES + 8 * len(self.shape)),
            "padding": 8 * len(self.payload) - self.code_bits - self.gap_bits,
        }

    def decode(self) -> np.ndarray:
        """The dense float32 tensor: centroids at the stored positions, 0 elsewhere.

        The streams are checked as they are decoded (``decode_entries``), so an inconsistent
        hand-built layer raises ``FormatError`` rather than writing out of bounds.
        """
        symbols, positions = decode_entries(self)
        real = symbols < (1 << self.r)
        out = np.zeros(self.numel, dtype=np.float32)
        out[positions[real]] = np.asarray(self.codebook, dtype=np.float32)[symbols[real]]
        return out.reshape(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeepCompressedLayer):
            return NotImplemented
        return (
            (self.shape, self.r, self.index_bits) == (other.shape, other.r, other.index_bits)
            and (self.nnz, self.entries) == (other.nnz, other.entries)
            and (self.code_bits, self.gap_bits) == (other.code_bits, other.gap_bits)
            and np.array_equal(self.codebook, other.codebook)
            and np.array_equal(self.code_lengths, other.code_lengths)
            and np.array_equal(self.gap_lengths, other.gap_lengths)
            and bytes(self.payload) == bytes(other.payload)
        )

    __hash__ = None  # type: ignore[assignment]


def default_index_bits(ndim: int) -> int:
    """The paper's gap width: 8 bits for convolutions (ndim > 2), 5 for everything else."""
    return 8 if ndim > 2 else 5


def deep_compress(
    weight: object,
    *,
    r: int = 4,
    codebook: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    index_bits: int | None = None,
    seed: int = 0,
) -> DeepCompressedLayer:
    """Encode ``weight`` (torch tensor or ndarray; exact zeros are pruned) the Deep Compression way.

    ``codebook``/``codes`` follow ``encode_layer``: float32 ``(2**r,)`` and an integer array of
    ``weight``'s shape (entries at zeros ignored), so both methods store identical clustered
    weights; without them the non-zeros are clustered by k-means. A tensor without non-zeros is
    stored as no entries, but needs an explicit codebook (there is nothing to cluster).
    """
    r = check_r(r)
    w = _as_float_array(weight)
    b = check_index_bits(default_index_bits(w.ndim) if index_bits is None else index_bits)
    flat = w.ravel()
    nonzero = flat != 0
    positions = np.flatnonzero(nonzero)
    cb, values = cluster_values(flat, nonzero, w.shape, r, codebook, codes, seed)
    return encode_entries(w.shape, r, b, cb, positions, values)


def encode_entries(
    shape: tuple[int, ...],
    r: int,
    b: int,
    cb: np.ndarray,
    positions: np.ndarray,
    values: np.ndarray,
) -> DeepCompressedLayer:
    """The layer from checked parts: sorted flat ``positions`` of the kept weights, their
    ``values`` (codes < 2**r) and float32 codebook ``cb``, at gap width ``b``. Shared by
    ``deep_compress`` and the width search, which checks and clusters the weights once."""
    k = 1 << r
    max_gap = (1 << b) - 1
    skips = np.diff(positions, prepend=-1) - 1
    fills = skips // (max_gap + 1)
    real_at = np.arange(positions.size) + np.cumsum(fills)  # entry index of each non-zero
    entries = int(positions.size + fills.sum())
    symbols = np.full(entries, k, dtype=np.int64)
    gaps = np.full(entries, max_gap, dtype=np.int64)
    symbols[real_at] = values
    gaps[real_at] = skips % (max_gap + 1)

    code_lengths = huffman.code_lengths(np.bincount(symbols, minlength=k + 1))
    gap_lengths = huffman.code_lengths(np.bincount(gaps, minlength=1 << b))
    code_stream, code_bits = huffman.encode(symbols, code_lengths)
    gap_stream, gap_bits = huffman.encode(gaps, gap_lengths)
    return DeepCompressedLayer(
        shape=tuple(int(d) for d in shape),
        r=r,
        index_bits=b,
        codebook=cb,
        nnz=int(positions.size),
        entries=entries,
        code_lengths=code_lengths,
        gap_lengths=gap_lengths,
        code_bits=code_bits,
        gap_bits=gap_bits,
        payload=code_stream + gap_stream,
    )


def check_r(r: object) -> int:
    """``r`` as an int, or ``InvalidInputError`` when it is no code width this format stores."""
    if not (isinstance(r, int | np.integer) and 1 <= r <= MAX_R):
        raise InvalidInputError(f"r (bits per cluster code) must be in 1..{MAX_R}, got {r!r}")
    return int(r)


def check_index_bits(b: object) -> int:
    """``b`` as an int, or ``InvalidInputError`` when it is no gap width this format stores."""
    if not (isinstance(b, int | np.integer) and 1 <= b <= MAX_INDEX_BITS):
        raise InvalidInputError(f"index_bits must be an int in 1..{MAX_INDEX_BITS}, got {b!r}")
    return int(b)


def coded_bits(positions: np.ndarray, values: np.ndarray, k: int, b: int) -> int:
    """Huffman-coded bits of both streams (codes and gaps) at gap width ``b``, from histograms.

    Exactly ``code_bits + gap_bits`` of ``deep_compress`` at that width, but with memory the
    size of the kept weights: the entry lists (fillers included, several times the kept
    weights at narrow widths) are never built, so a width search costs one encode, not one per
    width. ``positions`` are the sorted flat positions of the kept weights, ``values`` their
    codes (< ``k``)."""
    mask = (1 << b) - 1
    skips = np.diff(positions, prepend=-1) - 1
    fills = int((skips >> b).sum())  # each bridges 2**b positions with the largest gap
    symbols = np.bincount(values, minlength=k + 1)
    symbols[k] += fills
    gaps = np.bincount(skips & mask, minlength=mask + 1)
    gaps[mask] += fills
    lengths = huffman.code_lengths(symbols), huffman.code_lengths(gaps)
    return int(symbols @ lengths[0].astype(np.int64) + gaps @ lengths[1].astype(np.int64))


def decode_entries(layer: DeepCompressedLayer) -> tuple[np.ndarray, np.ndarray]:
    """(code symbol, flat position) of every entry, fillers included, checked on the way.

    Raises ``FormatError`` naming the problem when a parameter is out of range, a length table
    is no prefix code, the streams do not hold exactly ``entries`` codes each, the non-fillers
    are not ``nnz``, a filler is not the largest gap or ends the list, or a position falls past
    the tensor. The file reader and writer rely on this (``layer_problem``).
    """
    problem = _parameter_problem(layer)
    if problem:
        raise FormatError(problem)
    k = 1 << layer.r
    code_len = (layer.code_bits + 7) // 8
    raw = memoryview(layer.payload)
    symbols = _decode_stream("code", raw[:code_len], layer.code_bits, layer.code_lengths, layer)
    gaps = _decode_stream("gap", raw[code_len:], layer.gap_bits, layer.gap_lengths, layer)
    filler = symbols == k
    if layer.entries - int(filler.sum()) != layer.nnz:
        raise FormatError(
            f"the code stream holds {layer.entries - int(filler.sum())} non-zeros, "
            f"nnz says {layer.nnz}"
        )
    max_gap = (1 << layer.index_bits) - 1
    if np.any(gaps[filler] != max_gap):
        raise FormatError(f"a filler entry has a gap other than the largest, {max_gap}")
    if layer.entries and filler[-1]:
        raise FormatError("the last entry is a filler (no entries may follow the last non-zero)")
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if positions.size and positions[-1] >= layer.numel:
        raise FormatError(
            f"the gaps reach position {int(positions[-1])}, past the tensor's {layer.numel}"
        )
    return symbols, positions


def layer_problem(layer: DeepCompressedLayer) -> str | None:
    """Every rule of docs/format.md kind 4 except the shape's (streams are decoded), or None."""
    try:
        decode_entries(layer)
    except FormatError as e:
        return str(e)
    return None


def _parameter_problem(layer: DeepCompressedLayer) -> str | None:
    """What is wrong with the parameters, tables and sizes (no stream decoding), or None."""
    if not 1 <= layer.r <= MAX_R:
        return f"r must be in 1..{MAX_R}, got {layer.r}"
    if not 1 <= layer.index_bits <= MAX_INDEX_BITS:
        return f"index_bits must be in 1..{MAX_INDEX_BITS}, got {layer.index_bits}"
    k = 1 << layer.r
    codebook = np.asarray(layer.codebook)
    if codebook.shape != (k,) or codebook.dtype != np.float32:
        return f"codebook must be float32 of shape ({k},), got {codebook.dtype} {codebook.shape}"
    if not np.all(np.isfinite(codebook)):
        return "codebook holds NaN or Inf"
    for what, lengths, size in (
        ("code", layer.code_lengths, k + 1),
        ("gap", layer.gap_lengths, 1 << layer.index_bits),
    ):
        lens = np.asarray(lengths)
        if lens.shape != (size,) or lens.dtype.kind not in "iu":
            return f"{what} lengths must be {size} integers, got {lens.dtype} {lens.shape}"
        if int(lens.min()) < 0 or int(lens.max()) > huffman.MAX_CODE_LENGTH:
            return f"{what} lengths must lie in 0..{huffman.MAX_CODE_LENGTH}"
        if not huffman.is_prefix_free(lens):
            return f"{what} lengths break the Kraft inequality (no prefix code has them)"
    if not 0 <= layer.nnz <= layer.entries <= layer.numel:
        return f"need 0 <= nnz ({layer.nnz}) <= entries ({layer.entries}) <= numel ({layer.numel})"
    need = (layer.code_bits + 7) // 8 + (layer.gap_bits + 7) // 8
    if min(layer.code_bits, layer.gap_bits) < 0 or len(layer.payload) != need:
        return (
            f"streams of {layer.code_bits} and {layer.gap_bits} bits take {need} bytes, "
            f"the payload has {len(layer.payload)}"
        )
    return None


def _decode_stream(
    what: str, raw: memoryview, nbits: int, lengths: np.ndarray, layer: DeepCompressedLayer
) -> np.ndarray:
    try:
        return huffman.decode(raw, nbits, lengths, layer.entries)
    except FormatError as e:
        raise FormatError(f"{what} stream: {e}") from None
