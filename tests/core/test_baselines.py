"""The baselines a table is measured against: Deep Compression with its best index width, and
the entropy bound of any sparse-index coder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weightless_core.baselines.deep_compression import coded_bits, deep_compress
from weightless_core.baselines.strongest import (
    INDEX_BITS_SEARCHED,
    binary_entropy,
    code_entropy,
    deep_compress_best,
    deep_compression_bits,
    entropy_bound_bits,
    live_grid_bound_bits,
    sparse_index_bound_bits,
)
from weightless_core.errors import InvalidInputError


def _clustered(shape, density, *, r=2, seed=0):
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-1, 1, 1 << r, dtype=np.float32)
    codes = rng.integers(0, 1 << r, size=shape)
    w = codebook[codes]
    w[rng.random(shape) >= density] = 0
    return w, codebook, codes


def test_best_width_is_the_smallest_of_every_width_tried():
    w, cb, codes = _clustered((300, 400), 0.01)
    best = deep_compress_best(w, r=2, codebook=cb, codes=codes)
    sizes = {
        b: deep_compress(w, r=2, codebook=cb, codes=codes, index_bits=b).paper_bits
        for b in INDEX_BITS_SEARCHED
    }
    assert best.paper_bits == min(sizes.values())
    assert best.index_bits == min(b for b, bits in sizes.items() if bits == best.paper_bits)
    np.testing.assert_array_equal(best.decode(), w)


@pytest.mark.parametrize("density", [0.002, 0.05, 0.6])
def test_width_costs_from_histograms_are_the_encoded_streams_lengths(density: float) -> None:
    """The width search sizes each width from histograms (no entry lists built): the count
    must be the real streams' length, fillers included, at every width."""
    w, cb, codes = _clustered((90, 130), density, r=3, seed=2)
    positions = np.flatnonzero(w.ravel())
    values = codes.ravel()[positions]
    for b in range(1, 13):
        layer = deep_compress(w, r=3, codebook=cb, codes=codes, index_bits=b)
        assert coded_bits(positions, values, 8, b) == layer.code_bits + layer.gap_bits


def test_deep_compression_bits_are_the_best_widths_codes_and_gaps():
    w, cb, codes = _clustered((120, 150), 0.03, r=3, seed=5)
    positions = np.flatnonzero(w.ravel())
    best = deep_compress_best(w, r=3, codebook=cb, codes=codes)
    assert deep_compression_bits(positions, codes.ravel()[positions], 8) == (
        best.code_bits + best.gap_bits
    )


def test_best_width_beats_the_papers_fixed_width_at_high_sparsity():
    """At 1 % kept the mean gap is ~100 positions: the paper's 5-bit field for fully connected
    layers pays for a filler entry every 32 positions, a wider field does not."""
    w, cb, codes = _clustered((200, 500), 0.01, seed=1)
    best = deep_compress_best(w, r=2, codebook=cb, codes=codes)
    paper = deep_compress(w, r=2, codebook=cb, codes=codes)  # 5 bits for 2-D
    assert best.index_bits > 5 and best.fillers < paper.fillers // 10
    assert best.paper_bits < 0.8 * paper.paper_bits


def test_best_width_needs_a_width():
    w, cb, codes = _clustered((10, 10), 0.2)
    with pytest.raises(InvalidInputError, match="index width"):
        deep_compress_best(w, r=2, codebook=cb, codes=codes, widths=())


def test_entropies_by_hand():
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert binary_entropy(0.25) == pytest.approx(0.811278, abs=1e-6)
    assert code_entropy(np.array([1, 1, 1, 1])) == 2.0
    assert code_entropy(np.array([3, 0, 1])) == pytest.approx(0.811278, abs=1e-6)
    assert code_entropy(np.array([0, 0])) == 0.0
    with pytest.raises(InvalidInputError):
        binary_entropy(1.5)


def test_entropy_bound_by_hand():
    # 16 positions, 4 kept (d = 1/4), codes used 2, 1, 1 times: 16 * H(1/4) + 4 * 1.5 bits
    bound = entropy_bound_bits(16, np.array([2, 1, 1, 0]))
    assert bound == pytest.approx(16 * 0.8112781244591328 + 4 * 1.5)
    assert entropy_bound_bits(10, np.array([0, 0])) == 0.0  # nothing kept: nothing to say
    with pytest.raises(InvalidInputError):
        entropy_bound_bits(3, np.array([2, 2]))


def test_live_grid_bound_by_hand():
    # 4 x 6 positions; rows 0 and 2, columns 1, 2 and 5 live: a 2 x 3 grid holding 3 kept
    mask = np.zeros((4, 6), dtype=bool)
    mask[0, 1] = mask[0, 5] = mask[2, 2] = True
    counts = np.array([2, 1])
    grid = live_grid_bound_bits(mask, counts)
    assert grid == pytest.approx(4 + 6 + entropy_bound_bits(6, counts))
    # conv kernels are seen as (out, in * kh * kw), as the table's liveness bitmaps see them
    conv = mask.reshape(4, 2, 3)
    assert live_grid_bound_bits(conv, counts) == pytest.approx(grid)


def test_the_bound_reports_use_is_the_stronger_position_model():
    rng = np.random.default_rng(1)
    counts = np.array([30, 20, 10, 5])
    # kept weights spread over the whole layer: the bitmaps cost more than they save
    spread = np.zeros(400 * 300, dtype=bool)
    spread[rng.choice(spread.size, 65, replace=False)] = True
    spread = spread.reshape(400, 300)
    flat = entropy_bound_bits(spread.size, counts)
    assert sparse_index_bound_bits(spread, counts) == pytest.approx(flat)
    assert live_grid_bound_bits(spread, counts) > flat
    # a thousand kept inside 50 live rows and 60 live columns (a third of that grid, as after
    # pruning whole units): the bitmaps' 700 bits buy a far cheaper index
    packed = np.zeros((400, 300), dtype=bool)
    rows, cols = rng.choice(400, 50, replace=False), rng.choice(300, 60, replace=False)
    packed[np.ix_(rows, cols)] = rng.random((50, 60)) < 1 / 3
    packed[rows, cols[:50]] = True  # every chosen row and column live
    packed[rows[:10], cols[50:]] = True
    counts = np.array([int(packed.sum()) - 60, 30, 20, 10])
    bound = sparse_index_bound_bits(packed, counts)
    assert bound == pytest.approx(live_grid_bound_bits(packed, counts))
    assert bound < entropy_bound_bits(packed.size, counts) / 2
    # nothing kept: nothing to say, whatever the shape
    assert sparse_index_bound_bits(np.zeros((3, 3), dtype=bool), np.array([0, 0])) == 0.0


def test_deep_compression_never_beats_the_entropy_bound():
    for density in (0.005, 0.02, 0.1):
        w, cb, codes = _clustered((200, 400), density, seed=2)
        kept = w != 0
        bound = entropy_bound_bits(w.size, np.bincount(codes[kept], minlength=4))
        best = deep_compress_best(w, r=2, codebook=cb, codes=codes)
        assert best.code_bits + best.gap_bits >= bound
        # and it is not far above it: Huffman of codes and gaps loses at most ~1 bit a symbol
        assert best.code_bits + best.gap_bits <= bound + 2.5 * best.entries
        assert math.isfinite(bound)
