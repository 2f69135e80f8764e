"""An adaptive binary range coder for a sparse layer's positions and codes (docs/format.md, kind 7).

Why: the entropy bound ``N·H(d) + n·H(codes)`` treats every position alike, but a pruned layer's
kept weights come in runs (a kernel's neighbouring taps, the neighbouring pixels a hidden unit
reads). An arithmetic coder whose bit models are chosen by the neighbours already coded
(CABAC's significance contexts) learns those runs as it goes, with no side information, and
stores such a layer below the bound (BENCHMARKS.md ``context_coding``).

The layer is its ``rows x cols`` matrix view, visited in row-major order (only the live rows and
columns, when liveness bitmaps say which). A row's ``cols`` weights are laid out as lines of
``width`` (an image row a hidden unit reads, a kernel's taps), so each position codes one *kept*
bit in the context of its left, upper, upper-left and upper-right neighbours in that row
(``POSITION_CONTEXTS`` models); a kept position then codes its cluster code, ``r`` bits most
significant first, each in the model of its node in the binary tree of codes. Every model is a
pair of counts, so the probability is the Krichevsky-Trofimov estimate in 16-bit fixed point,
halved when the counts grow large.

The coder keeps a 32-bit range and emits bytes with carry propagation (the range coder of
Martin, 1979, as LZMA writes it); the decoder reads exactly the bytes the encoder wrote, so a
stream with bytes missing or left over is refused. Everything is integer arithmetic, so the
compiled kernels and the plain-Python ones (``WEIGHTLESS_NO_JIT=1``) give identical bytes.
"""

from __future__ import annotations

import numpy as np

from weightless_core._jit import inline, njit

PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
COUNT_LIMIT = 1 << 13  # counts are halved when they reach this total
TOP = 1 << 24  # the range is renormalised (one byte out) whenever it falls below this
MASK32 = 0xFFFFFFFF
POSITION_CONTEXTS = 16  # left (1), up (2), up-left (4), up-right (8) kept, in a row's geometry
# Caps that keep a reader's work and memory proportional to the stream it reads: a stream of
# ``L`` bytes codes at most ``POSITIONS_PER_BYTE * L`` positions and ``KEPT_PER_BYTE * L`` kept
# weights (a writer stores a layer past them another way).
POSITIONS_PER_BYTE = 1 << 10
KEPT_PER_BYTE = 16

# Kernel status codes (decode_grid): what a malformed stream got wrong.
OK = 0
BAD_FIRST_BYTE = 1
OVERRUN = 2
LEFTOVER = 3
TOO_MANY_KEPT = 4
TOO_FEW_KEPT = 5
STATUS_TEXT = {
    BAD_FIRST_BYTE: "its first byte is not 0",
    OVERRUN: "it ends before every position is decoded",
    LEFTOVER: "bytes are left over after the last position",
    TOO_MANY_KEPT: "it decodes more kept weights than nnz",
    TOO_FEW_KEPT: "it decodes fewer kept weights than nnz",
}


@inline
def _p0(counts: np.ndarray, m: int) -> int:
    """P(bit = 0) of model ``m`` in 1/65536ths: the KT estimate, clamped to [1, 65535]."""
    n0 = counts[m, 0]
    n1 = counts[m, 1]
    p = ((2 * n0 + 1) << PROB_BITS) // (2 * (n0 + n1) + 2)
    if p < 1:
        return 1
    if p > PROB_ONE - 1:
        return PROB_ONE - 1
    return p


@inline
def _learn(counts: np.ndarray, m: int, bit: int) -> None:
    counts[m, bit] += 1
    if counts[m, 0] + counts[m, 1] >= COUNT_LIMIT:
        counts[m, 0] >>= 1
        counts[m, 1] >>= 1


@inline
def _shift_low(st: np.ndarray, out: np.ndarray) -> None:
    """Move the top byte of ``low`` out (``st`` = low, range, cache, pending, written): a byte
    is held back while it could still take a carry, then written with it."""
    low = st[0]
    if low < 0xFF000000 or low > MASK32:
        carry = low >> 32
        temp = st[2]
        while st[3] > 0:
            out[st[4]] = (temp + carry) & 0xFF
            st[4] += 1
            temp = 0xFF
            st[3] -= 1
        st[2] = (low >> 24) & 0xFF
    st[3] += 1
    st[0] = (low & 0x00FFFFFF) << 8


@inline
def _encode_bit(st: np.ndarray, out: np.ndarray, models: np.ndarray, m: int, bit: int) -> None:
    bound = (st[1] >> PROB_BITS) * _p0(models, m)
    if bit == 0:
        st[1] = bound
    else:
        st[0] += bound
        st[1] -= bound
    _learn(models, m, bit)
    while st[1] < TOP:
        st[1] = (st[1] << 8) & MASK32
        _shift_low(st, out)


@inline
def _context(kept: np.ndarray, i: int, b: int, width: int) -> int:
    """The position model of position ``i`` (column ``b`` of its row), from the dense ``kept``."""
    ctx = 0
    at_left = b % width != 0
    at_right = (b + 1) % width != 0
    if at_left and kept[i - 1] != 0:
        ctx += 1
    if b >= width:
        if kept[i - width] != 0:
            ctx += 2
        if at_left and kept[i - width - 1] != 0:
            ctx += 4
        if at_right and kept[i - width + 1] != 0:
            ctx += 8
    return ctx


@inline
def _line(index: np.ndarray, k: int) -> int:
    """Row or column ``k`` of the coded ones: ``index[k]``, or ``k`` itself when ``index`` is
    empty (every row or column is coded)."""
    return index[k] if index.size else k


@njit()
def encode_grid(
    kept: np.ndarray,
    codes: np.ndarray,
    rows: np.int64,
    cols: np.int64,
    row_index: np.ndarray,
    col_index: np.ndarray,
    width: np.int64,
    r: np.int64,
) -> np.ndarray:
    """The stream of a ``rows x cols`` matrix whose kept positions are ``kept`` (uint8,
    row-major), with ``codes`` (uint8 below ``2**r``) of the kept positions in that order.
    Only the rows and columns in ``row_index``/``col_index`` (increasing int64; empty: all)
    are coded, and the others must hold nothing."""
    n_rows = row_index.size if row_index.size else rows
    n_cols = col_index.size if col_index.size else cols
    decisions = n_rows * n_cols
    out = np.zeros(2 * (decisions + codes.size * r) + 16, dtype=np.uint8)  # <= 2 bytes each
    st = np.zeros(5, dtype=np.int64)  # low, range, cache, pending bytes, bytes written
    st[1] = MASK32
    st[3] = 1
    pos_models = np.zeros((POSITION_CONTEXTS, 2), dtype=np.int64)
    code_models = np.zeros((1 << r, 2), dtype=np.int64)
    j = 0
    for ai in range(n_rows):
        a = _line(row_index, ai)
        for bi in range(n_cols):
            b = _line(col_index, bi)
            i = a * cols + b
            bit = 1 if kept[i] != 0 else 0
            _encode_bit(st, out, pos_models, _context(kept, i, b, width), bit)
            if bit:
                c = np.int64(codes[j])
                j += 1
                node = 1
                for k in range(r):
                    cb = (c >> (r - 1 - k)) & 1
                    _encode_bit(st, out, code_models, node, cb)
                    node = 2 * node + cb
    for _ in range(5):  # flush: every byte of low into the stream
        _shift_low(st, out)
    return out[: st[4]]


@inline
def _kept_in_row(positions: np.ndarray, lo: int, hi: int, target: int) -> int:
    """1 when ``target`` is among the increasing ``positions[lo:hi]`` (a few entries at most)."""
    for q in range(lo, hi):
        if positions[q] == target:
            return 1
        if positions[q] > target:
            return 0
    return 0


@njit()
def decode_grid(
    stream: np.ndarray,
    rows: np.int64,
    cols: np.int64,
    row_index: np.ndarray,
    col_index: np.ndarray,
    width: np.int64,
    r: np.int64,
    nnz: np.int64,
) -> tuple[np.int64, np.ndarray, np.ndarray]:
    """``(status, positions, codes)`` of a stream ``encode_grid`` wrote: the kept positions
    (flat indices of the ``rows x cols`` matrix, increasing) and their codes; status ``OK`` or
    what a malformed stream got wrong (then the arrays are partial and must not be used).
    Memory is ``O(nnz)`` and work ``O(coded positions)`` whatever the matrix's size:
    neighbours are looked up among the positions kept so far in the row."""
    n_rows = row_index.size if row_index.size else rows
    n_cols = col_index.size if col_index.size else cols
    positions = np.zeros(nnz, dtype=np.int64)
    codes = np.zeros(nnz, dtype=np.uint8)
    size = stream.size
    if size < 5:
        return np.int64(OVERRUN), positions, codes
    if stream[0] != 0:
        return np.int64(BAD_FIRST_BYTE), positions, codes
    code = 0
    for k in range(1, 5):
        code = (code << 8) | np.int64(stream[k])
    rd = 5
    rng = MASK32
    pos_models = np.zeros((POSITION_CONTEXTS, 2), dtype=np.int64)
    code_models = np.zeros((1 << r, 2), dtype=np.int64)
    j = 0  # kept so far
    for ai in range(n_rows):
        a = _line(row_index, ai)
        row_start = j  # this row's kept positions are positions[row_start:j]
        u = j  # first of them not before the upper-left neighbour
        for bi in range(n_cols):
            b = _line(col_index, bi)
            i = a * cols + b
            at_left = b % width != 0
            at_right = (b + 1) % width != 0
            ctx = 0
            if at_left and j > row_start and positions[j - 1] == i - 1:
                ctx += 1
            if b >= width:
                while u < j and positions[u] < i - width - 1:
                    u += 1
                ctx += 2 * _kept_in_row(positions, u, j, i - width)
                if at_left:
                    ctx += 4 * _kept_in_row(positions, u, j, i - width - 1)
                if at_right:
                    ctx += 8 * _kept_in_row(positions, u, j, i - width + 1)
            node = 0  # 0: the position's decision; then the code tree's node
            c = 0
            while True:
                if node == 0:
                    models = pos_models
                    m = ctx
                else:
                    models = code_models
                    m = node
                bound = (rng >> PROB_BITS) * _p0(models, m)
                if code < bound:
                    rng = bound
                    bit = 0
                else:
                    code -= bound
                    rng -= bound
                    bit = 1
                _learn(models, m, bit)
                while rng < TOP:
                    if rd >= size:
                        return np.int64(OVERRUN), positions, codes
                    rng = (rng << 8) & MASK32
                    code = ((code << 8) | np.int64(stream[rd])) & MASK32
                    rd += 1
                if node == 0:
                    if bit == 0:
                        break
                    if j >= nnz:
                        return np.int64(TOO_MANY_KEPT), positions, codes
                    positions[j] = i
                    node = 1
                else:
                    c = 2 * c + bit
                    node = 2 * node + bit
                    if node >= (1 << r):
                        codes[j] = c
                        j += 1
                        break
    if j < nnz:
        return np.int64(TOO_FEW_KEPT), positions, codes
    if rd != size:
        return np.int64(LEFTOVER), positions, codes
    return np.int64(OK), positions, codes
