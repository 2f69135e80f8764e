"""1-D k-means with linear initialisation, the clustering Deep Compression found best.

Linear initialisation spreads centroids evenly over ``[min, max]`` of the surviving weights, so
the rare large weights (which matter most) keep centroids of their own. Lloyd iterations on
sorted 1-D data need only boundaries between neighbouring centroids: O(n log k) per pass.
"""

from __future__ import annotations

import numpy as np

from weightless_core.errors import InvalidInputError


def kmeans_1d(
    values: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` (n,) into ``k`` centroids.

    Returns ``(centroids (k,) float32 ascending, codes (n,) int64)``. Deterministic: linear
    initialisation needs no randomness; ``seed`` is accepted for interface symmetry. An empty
    cluster keeps its previous centroid (it stays a valid, unused code).
    """
    del seed
    x = np.asarray(values, dtype=np.float64).ravel()
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if x.size == 0:
        raise InvalidInputError("cannot cluster an empty set of weights")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("weights to cluster hold NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    centroids = np.linspace(lo, hi, k) if k > 1 else np.array([x.mean()])
    order = np.argsort(x, kind="stable")
    xs = x[order]
    csum = np.concatenate([[0.0], np.cumsum(xs)])
    for _ in range(max_iter):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        edges = np.concatenate([[0], np.searchsorted(xs, bounds, side="right"), [xs.size]])
        counts = np.diff(edges)
        sums = csum[edges[1:]] - csum[edges[:-1]]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(new, centroids, rtol=0, atol=1e-12):
            centroids = new
            break
        centroids = new
    return centroids.astype(np.float32), assign_codes(x, centroids.astype(np.float32))


def assign_codes(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each value; ``centroids`` must be ascending."""
    c = np.asarray(centroids, dtype=np.float64)
    bounds = (c[1:] + c[:-1]) / 2
    return np.searchsorted(bounds, np.asarray(values, dtype=np.float64), side="right").astype(
        np.int64
    )
