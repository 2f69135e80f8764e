"""The documented hash: exact Python-int reference, vectorised path, pinned vectors, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightless_core.errors import InvalidInputError
from weightless_core.retrieval.hashing import (
    GOLDEN,
    MASK64,
    MIX1,
    MIX2,
    derive_seed,
    hash64,
    hash_array,
    mix64,
    seed_key,
)

U64 = st.integers(0, MASK64)


def _mix_from_the_docs(z: int) -> int:
    """``mix64`` exactly as docs/format.md writes it, one wrapping step per line."""
    z &= MASK64
    z ^= z >> 30
    z = (z * MIX1) & MASK64
    z ^= z >> 27
    z = (z * MIX2) & MASK64
    z ^= z >> 31
    return z


# (seed, key, mix64(seed + GOLDEN), hash64(seed, key)), as pinned in docs/format.md.
VECTORS = [
    (0, 0, 0xE220A8397B1DCDAF, 0x48218226FF3CD4BF),
    (1, 7, 0x910A2DEC89025CC1, 0x1F19B669ED0688EC),
    (0x0123456789ABCDEF, MASK64, 0x157A3807A48FAA9D, 0x0F01D357AF31949A),
]


@pytest.mark.parametrize(("seed", "key", "sk", "h"), VECTORS)
def test_pinned_vectors(seed: int, key: int, sk: int, h: int) -> None:
    assert seed_key(seed) == sk
    assert hash64(seed, key) == h
    assert int(hash_array(np.array([key], dtype=np.uint64), seed)[0]) == h


def test_constants_are_splitmix64() -> None:
    assert (GOLDEN, MIX1, MIX2) == (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
    # SplitMix64's first output for state 0 is mix64(GOLDEN): a published value.
    assert mix64(GOLDEN) == 0xE220A8397B1DCDAF


@settings(max_examples=200, deadline=None)
@given(U64)
def test_mix64_matches_the_documented_steps(z: int) -> None:
    assert mix64(z) == _mix_from_the_docs(z)


@settings(max_examples=60, deadline=None)
@given(st.lists(U64, min_size=1, max_size=50), U64)
def test_hash_array_equals_reference(keys: list[int], seed: int) -> None:
    got = hash_array(np.array(keys, dtype=np.uint64), seed)
    assert got.dtype == np.uint64
    assert [int(v) for v in got] == [hash64(seed, k) for k in keys]


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1, 2**63, MASK64])
def test_hash_array_edge_keys_and_shapes(seed: int) -> None:
    keys = np.array([[0, 1, MASK64], [2**63, 2**63 - 1, 2**32]], dtype=np.uint64)
    got = hash_array(keys, seed)
    assert got.shape == keys.shape
    assert [int(v) for v in got.ravel()] == [hash64(seed, int(k)) for k in keys.ravel()]
    assert keys[0, 2] == MASK64  # the input is not modified


def test_hash_array_on_many_random_keys() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64, size=2000, dtype=np.uint64)
    for seed in (0, 12345, MASK64):
        got = hash_array(keys, seed)
        assert [int(v) for v in got] == [hash64(seed, int(k)) for k in keys]


def test_derive_seed() -> None:
    for seed in (0, 1, 42, MASK64):
        seeds = [derive_seed(seed, a) for a in range(101)]
        assert seeds[0] == seed
        assert len(set(seeds)) == 101
        assert all(0 <= s <= MASK64 for s in seeds)
    assert derive_seed(5, 3) == derive_seed(np.uint64(5), 3)  # numpy ints are fine


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "3"])
def test_bad_seed(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="seed"):
        seed_key(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        hash_array(np.zeros(1, dtype=np.uint64), bad)  # type: ignore[arg-type]
