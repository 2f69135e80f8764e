"""Deep Compression baseline: exact round trips, the documented gap convention, honest sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import weightless_core as wl
from weightless_core import _jit
from weightless_core.baselines import huffman
from weightless_core.baselines.deep_compression import (
    DeepCompressedLayer,
    decode_entries,
    deep_compress,
    default_index_bits,
    layer_problem,
)
from weightless_core.errors import FormatError, InvalidInputError
from weightless_core.method.cluster import kmeans_1d
from weightless_core.method.layer import encode_layer


def _clustered(
    shape: tuple[int, ...], zeros: float, r: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pruned weight whose non-zeros are centroids, codebook, codes)."""
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-1.0, 1.0, 1 << r, dtype=np.float32)
    codes = rng.integers(0, 1 << r, size=shape)
    weight = codebook[codes]
    weight[rng.random(shape) < zeros] = 0.0
    return weight, codebook, codes


def _reference_entries(weight: np.ndarray, codes: np.ndarray, r: int, b: int) -> list[tuple]:
    """(code symbol, gap) per entry, one position at a time, as the docstring states it."""
    out, skipped = [], 0
    for value, code in zip(weight.ravel(), codes.ravel(), strict=True):
        if value == 0:
            skipped += 1
            continue
        while skipped > (1 << b) - 1:
            out.append((1 << r, (1 << b) - 1))
            skipped -= 1 << b
        out.append((int(code), skipped))
        skipped = 0
    return out


CASES = {  # name -> (shape, fraction pruned, r)
    "fc sparse": ((300, 100), 0.9, 4),
    "fc very sparse": ((200, 150), 0.995, 5),
    "conv sparse": ((16, 8, 3, 3), 0.7, 3),
    "conv very sparse": ((32, 16, 3, 3), 0.998, 4),
    "dense-ish": ((64, 64), 0.1, 2),
    "no zeros": ((7, 9), 0.0, 1),
    "1-D": ((500,), 0.95, 8),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exact_round_trip_and_bit_counts(case: str) -> None:
    shape, zeros, r = CASES[case]
    weight, codebook, codes = _clustered(shape, zeros, r)
    layer = deep_compress(torch.from_numpy(weight), r=r, codebook=codebook, codes=codes)
    expected = np.where(weight != 0, codebook[codes], 0).astype(np.float32)
    decoded = layer.decode()
    assert decoded.dtype == np.float32 and decoded.shape == shape
    np.testing.assert_array_equal(decoded, expected)

    b = default_index_bits(len(shape))
    assert layer.index_bits == b
    ref = np.array(_reference_entries(weight, codes, r, b), dtype=np.int64).reshape(-1, 2)
    assert layer.nnz == int((weight != 0).sum())
    assert layer.entries == len(ref) and layer.fillers == layer.entries - layer.nnz
    if "very sparse" in case:
        assert layer.entries > layer.nnz  # filler zeros were needed
    symbols, positions = decode_entries(layer)
    np.testing.assert_array_equal(symbols, ref[:, 0])
    np.testing.assert_array_equal(np.diff(positions, prepend=-1) - 1, ref[:, 1])
    # Bits written = the lengths of the Huffman tables over the symbol counts, nothing else.
    code_counts = np.bincount(ref[:, 0], minlength=(1 << r) + 1)
    gap_counts = np.bincount(ref[:, 1], minlength=1 << b)
    np.testing.assert_array_equal(layer.code_lengths, huffman.code_lengths(code_counts))
    np.testing.assert_array_equal(layer.gap_lengths, huffman.code_lengths(gap_counts))
    assert layer.code_bits == int(np.dot(code_counts, layer.code_lengths.astype(np.int64)))
    assert layer.gap_bits == int(np.dot(gap_counts, layer.gap_lengths.astype(np.int64)))
    assert len(layer.payload) == (layer.code_bits + 7) // 8 + (layer.gap_bits + 7) // 8

    assert layer.paper_bits == layer.code_bits + layer.gap_bits + 32 * 2**r
    sizes = layer.sizes()
    assert sum(sizes.values()) == 8 * layer.nbytes
    assert (sizes["codes"], sizes["index"], sizes["codebook"]) == (
        layer.code_bits,
        layer.gap_bits,
        32 * 2**r,
    )
    assert 0 <= sizes["padding"] < 16
    assert layer_problem(layer) is None


def test_gap_convention_by_hand():
    # b = 2: gaps 0..3. Non-zeros at 0, 1, 7, 11: skips 0, 0, 5, 3; the skip of 5 needs one
    # filler (gap 3, at position 5) and then gap 1.
    weight = np.zeros(12, dtype=np.float32)
    weight[[0, 1, 7, 11]] = [1.0, -1.0, 1.0, 1.0]
    codebook = np.array([-1.0, 1.0], dtype=np.float32)
    codes = (weight > 0).astype(np.int64)
    layer = deep_compress(weight, r=1, codebook=codebook, codes=codes, index_bits=2)
    symbols, positions = decode_entries(layer)
    assert symbols.tolist() == [1, 0, 2, 1, 1]
    assert positions.tolist() == [0, 1, 5, 7, 11]
    assert (layer.nnz, layer.entries) == (4, 5)
    np.testing.assert_array_equal(layer.decode(), weight)
    # A skip of exactly 2**b needs one filler, a skip of 2**b - 1 none.
    for skip, entries in ((4, 3), (3, 2), (8, 4)):
        w = np.zeros(skip + 2, dtype=np.float32)
        w[[0, skip + 1]] = 1.0
        one = np.ones(w.shape, dtype=np.int64)
        assert deep_compress(w, r=1, codebook=codebook, codes=one, index_bits=2).entries == entries


def test_index_bits_default_by_ndim():
    assert [default_index_bits(n) for n in (1, 2, 3, 4)] == [5, 5, 8, 8]
    for shape in ((40,), (5, 8), (2, 4, 5), (2, 2, 2, 5)):
        w, cb, codes = _clustered(shape, 0.5, 2)
        assert deep_compress(w, r=2, codebook=cb, codes=codes).index_bits == (
            8 if len(shape) > 2 else 5
        )
    w, cb, codes = _clustered((30, 30), 0.9, 2)
    layer = deep_compress(w, r=2, codebook=cb, codes=codes, index_bits=3)
    assert layer.index_bits == 3 and layer.gap_lengths.shape == (8,)
    np.testing.assert_array_equal(layer.decode(), w)


def test_same_clustering_as_encode_layer():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((40, 50)).astype(np.float32)
    w[rng.random(w.shape) < 0.85] = 0.0
    dc = deep_compress(w, r=3)
    bloomier = encode_layer(w, r=3, t=9, seed=3)
    np.testing.assert_array_equal(dc.codebook, bloomier.codebook)
    kept = w != 0
    np.testing.assert_array_equal(dc.decode()[kept], bloomier.decode()[kept])
    assert not dc.decode()[~kept].any()  # no false positives in an indexed format
    cb, codes = kmeans_1d(w[kept], 8)
    full = np.zeros(w.shape, dtype=np.int64)
    full[kept] = codes
    assert deep_compress(w, r=3, codebook=cb, codes=full) == dc


def test_no_non_zeros():
    codebook = np.array([-0.5, 0.5], dtype=np.float32)
    zeros = np.zeros((3, 4), dtype=np.float32)
    layer = deep_compress(zeros, r=1, codebook=codebook, codes=np.zeros((3, 4), dtype=np.int64))
    assert (layer.nnz, layer.entries, layer.code_bits, layer.gap_bits) == (0, 0, 0, 0)
    assert layer.payload == b""
    np.testing.assert_array_equal(layer.decode(), zeros)
    with pytest.raises(InvalidInputError, match="no non-zero weights to cluster"):
        deep_compress(zeros, r=1)


def test_equality():
    w, cb, codes = _clustered((20, 20), 0.8, 2)
    a = deep_compress(w, r=2, codebook=cb, codes=codes)
    assert a == deep_compress(w, r=2, codebook=cb, codes=codes)
    assert a != deep_compress(w, r=2, codebook=cb, codes=codes, index_bits=4)
    assert a != dataclasses.replace(a, codebook=cb + 1)
    assert a != "layer"
    with pytest.raises(TypeError):
        hash(a)


def test_lazy_exports():
    assert wl.deep_compress is deep_compress
    assert wl.DeepCompressedLayer is DeepCompressedLayer


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": np.array([1.0, np.nan, 0.0])}, "NaN or Inf"),
        ({"weight": np.array([1.0, np.inf, 0.0])}, "NaN or Inf"),
        ({"weight": np.array([True, False])}, "float tensor"),
        ({"weight": np.float32(1.0)}, "at least one dimension"),
        ({"r": 0}, "r .bits per cluster code"),
        ({"r": 9}, "r .bits per cluster code"),
        ({"index_bits": 0}, "index_bits"),
        ({"index_bits": 13}, "index_bits"),
        ({"index_bits": 4.0}, "index_bits"),
        ({"codebook": None}, "both codebook and codes"),
        ({"codes": None}, "both codebook and codes"),
        ({"codebook": np.zeros(3, dtype=np.float32)}, "2\\*\\*r = 4"),
        ({"codebook": np.array([0, 1, np.nan, 2], dtype=np.float32)}, "NaN or Inf"),
        ({"codes": np.zeros((2, 2), dtype=np.int64)}, "weight's shape"),
        ({"codes": np.zeros((3, 4))}, "integer array"),
        ({"codes": np.full((3, 4), 4)}, "codes must lie in"),
        ({"codes": np.full((3, 4), -1)}, "codes must lie in"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {
        "weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "r": 2,
        "codebook": np.linspace(0, 1, 4, dtype=np.float32),
        "codes": np.ones((3, 4), dtype=np.int64),
    }
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        deep_compress(args.pop("weight"), **args)


def test_decode_entries_names_broken_layers():
    w, cb, codes = _clustered((40, 40), 0.98, 2)
    layer = deep_compress(w, r=2, codebook=cb, codes=codes)
    assert layer.fillers > 0
    broken = {
        "nnz says": dataclasses.replace(layer, nnz=layer.nnz - 1),
        "need 0 <= nnz": dataclasses.replace(layer, entries=layer.numel + 1),
        "code stream": dataclasses.replace(layer, entries=layer.entries + 1, nnz=layer.nnz + 1),
        "payload has": dataclasses.replace(layer, payload=layer.payload[:-1]),
        "past the tensor": dataclasses.replace(layer, shape=(40, 39)),
        "Kraft": dataclasses.replace(layer, gap_lengths=np.ones(32, dtype=np.uint8)),
        "lengths must be 5": dataclasses.replace(layer, code_lengths=layer.code_lengths[:4]),
        "float32": dataclasses.replace(layer, codebook=cb.astype(np.float64)),
        "r must be": dataclasses.replace(layer, r=0),
    }
    for match, bad in broken.items():
        with pytest.raises(FormatError, match=match):
            bad.decode()
        assert match.split()[0] in (layer_problem(bad) or "")


def test_fillers_must_be_canonical():
    # Hand-built streams: a trailing filler, and a filler with a short gap, are refused.
    codebook = np.array([-1.0, 1.0], dtype=np.float32)
    code_lengths = np.array([1, 2, 2], dtype=np.uint8)  # symbol 2 = filler
    gap_lengths = np.array([1, 1], dtype=np.uint8)  # b = 1: gaps 0, 1

    def layer(symbols: list[int], gaps: list[int], nnz: int) -> DeepCompressedLayer:
        codes, code_bits = huffman.encode(symbols, code_lengths)
        gap_stream, gap_bits = huffman.encode(gaps, gap_lengths)
        return DeepCompressedLayer(
            shape=(10,),
            r=1,
            index_bits=1,
            codebook=codebook,
            nnz=nnz,
            entries=len(symbols),
            code_lengths=code_lengths,
            gap_lengths=gap_lengths,
            code_bits=code_bits,
            gap_bits=gap_bits,
            payload=codes + gap_stream,
        )

    np.testing.assert_array_equal(
        layer([1, 2, 0], [0, 1, 1], 2).decode(), [1, 0, 0, 0, -1, 0, 0, 0, 0, 0]
    )
    with pytest.raises(FormatError, match="last entry is a filler"):
        layer([1, 2], [0, 1], 1).decode()
    with pytest.raises(FormatError, match="filler entry has a gap"):
        layer([1, 2, 0], [0, 0, 1], 2).decode()


@pytest.mark.skipif(not _jit.ENABLED, reason="a million weights is slow uncompiled")
def test_a_million_weights():
    w, cb, codes = _clustered((1000, 1000), 0.9, 4, seed=5)
    layer = deep_compress(w, r=4, codebook=cb, codes=codes)
    np.testing.assert_array_equal(layer.decode(), w)
    assert layer.nbytes < 0.1 * w.nbytes
