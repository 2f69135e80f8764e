"""1-D k-means, linear and sign-aware initialisation: toy cases, ordering, nearest codes, the
pruned-weight case sign-aware starts fix, refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightless_core.errors import InvalidInputError
from weightless_core.method.cluster import (
    INITS,
    assign_codes,
    assign_penalised,
    capped_kmeans,
    cluster_to_counts,
    kmeans_1d,
    linear_init,
    rate_constrained_kmeans,
    sign_init,
    squared_error,
)


def test_hand_checked_toy_case() -> None:
    # linear init [0, 5.1]; boundary 2.55 splits {0, .1, .2} | {5, 5.1}: means 0.1 and 5.05.
    centroids, codes = kmeans_1d(np.array([0.0, 0.1, 0.2, 5.0, 5.1]), 2)
    assert centroids.dtype == np.float32 and codes.dtype == np.int64
    np.testing.assert_allclose(centroids, [0.1, 5.05], rtol=0, atol=1e-6)
    assert codes.tolist() == [0, 0, 0, 1, 1]


def test_linear_init_keeps_rare_large_weights() -> None:
    values = np.concatenate([np.linspace(-0.1, 0.1, 1000), [3.0]])
    centroids, codes = kmeans_1d(values, 4)
    assert codes[-1] == 3 and centroids[3] == pytest.approx(3.0)


def test_k_equals_one_is_the_mean() -> None:
    values = np.array([1.0, 2.0, 6.0], dtype=np.float32)
    centroids, codes = kmeans_1d(values, 1)
    np.testing.assert_allclose(centroids, [3.0])
    assert codes.tolist() == [0, 0, 0]


def test_more_clusters_than_distinct_values() -> None:
    centroids, codes = kmeans_1d(np.array([1.0, 1.0, 2.0]), 8)
    assert centroids.shape == (8,)
    assert np.all(np.diff(centroids) >= 0)
    np.testing.assert_array_equal(centroids[codes], [1.0, 1.0, 2.0])
    same, codes_same = kmeans_1d(np.full(5, -0.5), 4)
    np.testing.assert_array_equal(same[codes_same], np.full(5, -0.5, dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32),
        min_size=1,
        max_size=300,
    ),
    st.integers(1, 16),
    st.sampled_from(INITS),
)
def test_sorted_centroids_and_nearest_codes(values: list[float], k: int, init: str) -> None:
    x = np.array(values, dtype=np.float32)
    centroids, codes = kmeans_1d(x, k, init=init)
    assert centroids.shape == (k,) and codes.shape == x.shape
    assert np.all(np.isfinite(centroids))
    assert np.all(np.diff(centroids) >= 0)
    assert codes.min() >= 0 and codes.max() < k
    dist = np.abs(x.astype(np.float64)[:, None] - centroids.astype(np.float64)[None, :])
    chosen = dist[np.arange(x.size), codes]
    assert np.all(chosen <= dist.min(axis=1) + 1e-9)
    assert np.all(centroids >= x.min() - 1e-4) and np.all(centroids <= x.max() + 1e-4)
    np.testing.assert_array_equal(assign_codes(x, centroids), codes)


def _pruned_weights(n: int = 20_000, negative: float = 0.5) -> np.ndarray:
    """What magnitude pruning leaves of a Gaussian layer: |w| above a threshold, both signs."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal(n) * 0.05
    w = w[np.abs(w) > 0.1]
    signs = np.where(rng.random(w.size) < negative, -1.0, 1.0)
    return np.abs(w) * signs


def test_sign_init_fills_the_codes_linear_init_leaves_empty() -> None:
    # survivors lie in [-max, -0.1] and [0.1, max]: linear starts put centroids in the gap
    x = _pruned_weights()
    for k in (8, 16):
        lin, lin_codes = kmeans_1d(x, k)
        sign, sign_codes = kmeans_1d(x, k, init="sign")
        assert np.unique(lin_codes).size < k, "the case this init exists for"
        assert np.unique(sign_codes).size == k
        lin_err = np.mean((x - lin[lin_codes]) ** 2)
        sign_err = np.mean((x - sign[sign_codes]) ** 2)
        assert sign_err < 0.8 * lin_err
        assert (sign < 0).sum() == round(k * (x < 0).mean())  # none in the gap, none moved


def test_sign_init_shares_centroids_by_count() -> None:
    x = _pruned_weights(negative=0.75)
    start = sign_init(x, 8)
    assert np.all(np.diff(start) > 0)
    assert (start < 0).sum() == round(8 * (x < 0).mean()) == 6
    assert start[0] == x.min() and start[-1] == x.max()
    assert start[5] == x[x < 0].max() and start[6] == x[x >= 0].min()
    # at least one centroid per sign, however lopsided
    lopsided = np.concatenate([np.full(999, 1.0), [-1.0]])
    assert (sign_init(lopsided, 4) < 0).sum() == 1
    # one sign only, or one centroid: the linear start
    one_sign = np.abs(x)
    np.testing.assert_array_equal(sign_init(one_sign, 8), linear_init(one_sign, 8))
    np.testing.assert_array_equal(sign_init(x, 1), [x.mean()])


def test_a_start_from_an_earlier_clustering_keeps_its_codes() -> None:
    # a layer clustered once, its weights then retrained a little: started from the first
    # centroids, k-means keeps the same codes, the unused ones unused
    x = _pruned_weights()
    first, first_codes = kmeans_1d(x, 8)
    drifted = first[first_codes] + np.random.default_rng(4).normal(0, 0.002, x.size)
    again, again_codes = kmeans_1d(drifted, 8, start=first)
    assert np.unique(again_codes).size == np.unique(first_codes).size < 8
    np.testing.assert_array_equal(again_codes, first_codes)
    np.testing.assert_allclose(again[np.unique(first_codes)], first[np.unique(first_codes)],
                               atol=1e-3)  # fmt: skip
    # the start is sorted first, and its codes index the sorted centroids
    shuffled, shuffled_codes = kmeans_1d(drifted, 8, start=first[::-1])
    np.testing.assert_array_equal(shuffled, again)
    np.testing.assert_array_equal(shuffled_codes, again_codes)


def test_deterministic() -> None:
    x = np.random.default_rng(0).standard_normal(5000)
    a, b = kmeans_1d(x, 16, seed=1), kmeans_1d(x, 16, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_refusals() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        kmeans_1d(np.array([]), 4)
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        kmeans_1d(np.array([1.0]), 0)
    with pytest.raises(InvalidInputError, match="init must be one of"):
        kmeans_1d(np.array([1.0]), 2, init="random")
    with pytest.raises(InvalidInputError, match="NaN or Inf"):
        kmeans_1d(np.array([1.0, np.nan]), 2)
    with pytest.raises(InvalidInputError, match="NaN or Inf"):
        kmeans_1d(np.array([1.0, np.inf]), 2)
    with pytest.raises(InvalidInputError, match="start must be 2 finite centroids, got 3"):
        kmeans_1d(np.array([1.0, 2.0]), 2, start=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(InvalidInputError, match="start must be 2 finite centroids"):
        kmeans_1d(np.array([1.0, 2.0]), 2, start=np.array([0.0, np.nan]))


def test_clustering_to_counts_fills_each_code_with_its_old_share_in_order():
    rng = np.random.default_rng(4)
    values = rng.normal(size=200)
    previous = np.array([0.5, -1.0, 2.0, 0.0])  # codes ordered by these, not by index
    counts = np.array([60, 50, 0, 90])
    centroids, codes = cluster_to_counts(values, counts, previous)
    assert np.bincount(codes, minlength=4).tolist() == counts.tolist()
    assert centroids[2] == np.float32(2.0)  # empty: keeps its previous centroid
    order = [1, 3, 0]  # ascending old centroids among the used codes
    runs = [values[codes == c] for c in order]
    assert all(a.max() <= b.min() for a, b in itertools.pairwise(runs))
    for c, run in zip(order, runs, strict=True):
        assert centroids[c] == pytest.approx(run.mean(), abs=1e-6)


@pytest.mark.parametrize(
    ("counts", "message"),
    [([1, 2], "counts must be 3"), ([5, -1, 6], "non-negative"), ([1, 1, 1], "not the 10")],
)
def test_clustering_to_counts_refuses_sizes_that_do_not_fit(counts, message):
    with pytest.raises(InvalidInputError, match=message):
        cluster_to_counts(np.arange(10.0), np.array(counts), np.array([0.0, 1.0, 2.0]))


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / codes.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_rate_constrained_kmeans_trades_error_for_entropy():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(-1, 0.3, 300), rng.normal(1, 0.3, 60)])
    start, _ = kmeans_1d(values, 8)
    plain = rate_constrained_kmeans(values, start[::-1], 0.0)  # any order of ``start``
    np.testing.assert_array_equal(np.sort(plain[0]), np.sort(kmeans_1d(values, 8, start=start)[0]))
    weights = (0.0, 0.01, 0.05, 0.3)
    runs = [rate_constrained_kmeans(values, start, w) for w in weights]
    entropies = [_entropy(codes) for _, codes in runs]
    errors = [squared_error(values, *run) for run in runs]
    assert entropies == sorted(entropies, reverse=True) and entropies[-1] < entropies[0] - 0.5
    assert errors == sorted(errors)
    assert np.unique(runs[-1][1]).size < 8  # rare codes emptied, their centroids kept
    assert runs[-1][0].shape == (8,) and np.all(np.isfinite(runs[-1][0]))


def test_capped_kmeans_finds_the_least_penalty_that_fits_or_none():
    rng = np.random.default_rng(8)
    values = rng.normal(size=500)
    start, codes = kmeans_1d(values, 8)
    budget = _entropy(codes) - 0.4
    centroids, capped = capped_kmeans(values, start, lambda c: _entropy(c) <= budget)
    assert _entropy(capped) <= budget
    assert squared_error(values, centroids, capped) > squared_error(values, start, codes)
    assert capped_kmeans(values, start, lambda c: False) is None


def test_rate_constrained_kmeans_refuses_no_values():
    with pytest.raises(InvalidInputError, match="empty"):
        rate_constrained_kmeans(np.array([]), np.array([0.0, 1.0]), 0.1)


@pytest.mark.parametrize("seed", range(6))
def test_penalised_assignment_is_the_least_cost_code_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 40))
    centroids = rng.normal(size=k)
    centroids[rng.integers(0, k, size=k // 4)] = centroids[0]  # repeated centroids
    penalty = rng.exponential(0.5, size=k)
    penalty[rng.random(k) < 0.2] = np.inf  # emptied codes
    penalty[int(rng.integers(0, k))] = rng.exponential(0.5)  # one code at least is live
    values = np.concatenate([rng.normal(scale=2, size=3000), centroids])
    cost = (values[:, None] - centroids) ** 2 + penalty
    codes = assign_penalised(values, centroids, penalty)
    assert np.all(np.isfinite(penalty[codes]))
    chosen = cost[np.arange(values.size), codes]
    assert np.allclose(chosen, cost.min(axis=1), rtol=0, atol=1e-12)
    ties = np.sort(cost, axis=1)
    clear = ties[:, 1] - ties[:, 0] > 1e-9 if k > 1 else np.ones(values.size, bool)
    assert np.array_equal(codes[clear], cost.argmin(axis=1)[clear])


def test_penalised_assignment_without_penalties_is_nearest_and_refuses_all_infinite():
    centroids = np.array([-1.0, 0.0, 2.0])
    values = np.array([-3.0, -0.4, 0.9, 1.1, 5.0])
    assert assign_penalised(values, centroids, np.zeros(3)).tolist() == [0, 1, 1, 2, 2]
    assert assign_penalised(values, centroids, np.array([0.0, np.inf, 0.0])).tolist() == [
        0, 0, 2, 2, 2,
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match="every code's penalty is infinite"):
        assign_penalised(values, centroids, np.full(3, np.inf))
