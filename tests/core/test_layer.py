"""Encoding one weight tensor: exact non-zeros, counted false positives, sizes and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.method.cluster import assign_codes
from weightless_core.method.layer import EncodedLayer, encode_layer
from weightless_core.retrieval import STRUCTURES


def _sparse(shape: tuple[int, ...], keep: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= keep] = 0.0
    w.reshape(-1)[0] = 0.75  # at least one non-zero ...
    w.reshape(-1)[-1] = 0.0  # ... and one zero
    return w


def _binomial_ok(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize(("r", "t"), [(1, 3), (2, 5), (4, 7), (4, 8), (8, 12)])
def test_decode_exact_at_non_zeros(structure: str, r: int, t: int) -> None:
    w = _sparse((90, 70), keep=0.2, seed=r * t)
    layer = encode_layer(w, r=r, t=t, seed=1, structure=structure)
    assert layer.structure.kind == structure
    assert (layer.r, layer.t, layer.shape, layer.numel) == (r, t, (90, 70), 6300)
    assert layer.codebook.dtype == np.float32 and layer.codebook.shape == (1 << r,)
    assert np.all(np.diff(layer.codebook) >= 0)
    nz = w != 0
    assert layer.nnz == int(nz.sum())
    decoded = layer.decode()
    assert decoded.dtype == np.float32 and decoded.shape == w.shape
    expected = layer.codebook[assign_codes(w[nz], layer.codebook)]
    np.testing.assert_array_equal(decoded[nz], expected)
    # pruned positions decode to 0 or to some centroid (a false positive)
    pruned_vals = decoded[~nz]
    assert np.all((pruned_vals == 0) | np.isin(pruned_vals, layer.codebook))


@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize(("r", "t"), [(2, 4), (4, 7), (3, 9)])
def test_false_positives_counted_exactly(structure: str, r: int, t: int) -> None:
    w = _sparse((200, 150), keep=0.1, seed=t)
    k = 1 << r
    codebook = np.linspace(0.5, 2.0, k, dtype=np.float32) * np.where(np.arange(k) % 2, 1, -1)
    codebook = np.sort(codebook).astype(np.float32)  # no centroid is 0
    codes = assign_codes(w.ravel(), codebook).reshape(w.shape)
    layer = encode_layer(w, r=r, t=t, seed=5, codebook=codebook, codes=codes, structure=structure)
    assert layer.structure.kind == structure
    decoded = layer.decode()
    nz = w != 0
    np.testing.assert_array_equal(decoded[nz], codebook[codes[nz]])
    fp = int((decoded[~nz] != 0).sum())
    assert layer.false_positives == fp
    pruned = int((~nz).sum())
    assert _binomial_ok(fp, pruned, 2.0 ** (r - t)), (fp, pruned * 2.0 ** (r - t))
    assert 0 < fp < pruned


def test_given_codebook_and_codes() -> None:
    w = _sparse((30, 40), keep=0.3, seed=3)
    codebook = np.array([-3.0, -1.0, 1.0, 3.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=w.shape)
    codes[w == 0] = 99  # ignored at zeros
    layer = encode_layer(w, r=2, t=6, seed=2, codebook=codebook, codes=codes)
    np.testing.assert_array_equal(layer.codebook, codebook)
    np.testing.assert_array_equal(layer.decode()[w != 0], codebook[codes[w != 0]])
    # the weight's own values do not matter on this path, only where it is zero
    again = encode_layer(
        np.where(w != 0, 7.0, 0.0), r=2, t=6, seed=2, codebook=codebook, codes=codes
    )
    assert again == layer


@pytest.mark.parametrize("shape", [(500,), (40, 30), (8, 6, 5, 5), (3, 7, 11)])
def test_shapes(shape: tuple[int, ...]) -> None:
    w = _sparse(shape, keep=0.25, seed=len(shape))
    layer = encode_layer(w, r=3, t=7)
    assert layer.shape == shape
    assert layer.decode().shape == shape
    nz = w != 0
    np.testing.assert_array_equal(
        layer.decode()[nz], layer.codebook[assign_codes(w[nz], layer.codebook)]
    )


def test_torch_input() -> None:
    w = _sparse((64, 32), keep=0.2, seed=9)
    from_numpy = encode_layer(w, r=3, t=8, seed=4)
    from_torch = encode_layer(torch.from_numpy(w).requires_grad_(True), r=3, t=8, seed=4)
    assert from_torch == from_numpy
    as_double = encode_layer(torch.from_numpy(w).double(), r=3, t=8, seed=4)
    assert as_double == from_numpy


@pytest.mark.parametrize("shape", [(100,), (10, 10), (5, 4, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize(("r", "t"), [(1, 2), (4, 7), (8, 32)])
def test_nbytes_formula(shape: tuple[int, ...], r: int, t: int) -> None:
    w = _sparse(shape, keep=0.3, seed=1)
    layer = encode_layer(w, r=r, t=t)
    table = layer.structure.table_nbytes
    assert table == len(layer.structure.table_bytes())
    assert layer.nbytes == 37 + 8 * len(shape) + 4 * 2**r + table


def test_deterministic_and_eq() -> None:
    w = _sparse((50, 50), keep=0.2)
    a, b = encode_layer(w, r=4, t=7, seed=3), encode_layer(w.copy(), r=4, t=7, seed=3)
    assert a == b
    assert a.structure.table_bytes() == b.structure.table_bytes()
    assert a != encode_layer(w, r=4, t=8, seed=3)
    assert a != encode_layer(w, r=4, t=7, seed=4)
    assert a != "layer"
    with pytest.raises(TypeError):
        hash(a)
    assert isinstance(a, EncodedLayer)


def test_k_means_path_without_zero_centroids_counts_false_positives() -> None:
    w = _sparse((120, 100), keep=0.15, seed=11)
    layer = encode_layer(w, r=4, t=6, seed=0)
    assert not np.any(layer.codebook == 0)
    decoded = layer.decode()
    assert layer.false_positives == int((decoded[w == 0] != 0).sum())


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"r": 0, "t": 4}, r"r \(bits per cluster code\) must be in 1\.\.8, got 0"),
        ({"r": 9, "t": 12}, r"r \(bits per cluster code\) must be in 1\.\.8, got 9"),
        ({"r": 4, "t": 4}, r"r < t <= 32; got r=4, t=4"),
        ({"r": 4, "t": 3}, r"r < t <= 32; got r=4, t=3"),
        ({"r": 4, "t": 33}, r"r < t <= 32; got r=4, t=33"),
        ({"structure": "ribbon?"}, "unknown structure"),
    ],
)
def test_bad_bits(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        encode_layer(_sparse((10, 10), 0.3), **kwargs)


def test_bad_tensors() -> None:
    with pytest.raises(InvalidInputError, match="no non-zero weights"):
        encode_layer(np.zeros((5, 5), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="no zeros: prune it first"):
        encode_layer(np.ones((5, 5), dtype=np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        w = _sparse((6, 6), 0.5)
        w[1, 1] = bad
        with pytest.raises(InvalidInputError, match="NaN or Inf"):
            encode_layer(w)
    with pytest.raises(InvalidInputError, match="float tensor"):
        encode_layer(np.zeros(4, dtype=bool))
    with pytest.raises(InvalidInputError, match="at least one dimension"):
        encode_layer(np.float32(1.0))


def test_bad_codebooks_and_codes() -> None:
    w = _sparse((10, 10), 0.3)
    codes = np.zeros(w.shape, dtype=np.int64)
    with pytest.raises(InvalidInputError, match=r"codebook must have 2\*\*r = 4 entries, got 3"):
        encode_layer(w, r=2, t=5, codebook=np.zeros(3, np.float32), codes=codes)
    with pytest.raises(InvalidInputError, match="both codebook and codes"):
        encode_layer(w, r=2, t=5, codebook=np.zeros(4, np.float32))
    with pytest.raises(InvalidInputError, match="codebook holds NaN or Inf"):
        encode_layer(w, r=2, t=5, codebook=np.array([0, 1, np.nan, 2], np.float32), codes=codes)
    with pytest.raises(InvalidInputError, match="codes must have the weight's shape"):
        encode_layer(w, r=2, t=5, codebook=np.zeros(4, np.float32), codes=codes[:5])
    with pytest.raises(InvalidInputError, match=r"got \(100,\)"):  # same size is not enough
        encode_layer(w, r=2, t=5, codebook=np.zeros(4, np.float32), codes=codes.ravel())
    with pytest.raises(InvalidInputError, match=r"codes must lie in \[0, 4\)"):
        encode_layer(w, r=2, t=5, codebook=np.zeros(4, np.float32), codes=codes + 4)
    with pytest.raises(InvalidInputError, match="codes must be an integer array"):
        encode_layer(w, r=2, t=5, codebook=np.zeros(4, np.float32), codes=codes + 0.5)


@pytest.mark.parametrize("structure", ["bloomier", "fuse3", "fuse4"])
def test_read_codes_matches_a_query_of_every_position(structure: str) -> None:
    rng = np.random.default_rng(9)
    w = rng.standard_normal((120, 70)).astype(np.float32)
    w[rng.random(w.shape) < 0.85] = 0
    layer = encode_layer(w, r=3, t=6, seed=4, structure=structure)
    q = layer.structure.query(np.arange(layer.numel, dtype=np.uint64)).reshape(w.shape)
    codes, valid = layer.read_codes()
    assert codes.dtype == np.uint8 and codes.shape == w.shape  # r <= 8: a byte per position
    np.testing.assert_array_equal(valid, q < 8)
    np.testing.assert_array_equal(codes, np.where(q < 8, q, 0))
    assert int(valid.sum()) == layer.nnz + layer.false_positives
