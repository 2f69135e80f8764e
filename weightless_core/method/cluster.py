"""1-D k-means with linear initialisation, the clustering Deep Compression found best.

Linear initialisation spreads centroids evenly over ``[min, max]`` of the surviving weights, so
the rare large weights (which matter most) keep centroids of their own. After magnitude pruning
the survivors are bimodal (nothing near zero is left), so the centroids that start in the gap
can end empty: LeNet-5's conv layers used 6 of 8 codes. ``init="sign"`` spreads them linearly
over each sign's own range instead, shared out by how many weights each sign holds, which keeps
the large weights covered and puts no centroid in the gap. Lloyd iterations on sorted 1-D data
need only boundaries between neighbouring centroids: O(n log k) per pass.

``cluster_to_counts`` clusters again without k-means: each code keeps exactly as many weights
as an earlier clustering gave it, so a coder of the codes' histogram (Deep Compression's
Huffman codes) costs what it did. ``capped_kmeans`` is entropy-constrained k-means (Chou,
Lookabaugh and Gray, 1989): a code's length in bits, weighted, is added to each distance, so
the codes' entropy falls as far as a byte budget needs and no further.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from weightless_core.config.setting_schema import CLUSTER_INITS as INITS
from weightless_core.errors import InvalidInputError


def kmeans_1d(
    values: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 50,
    init: str = "linear",
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` (n,) into ``k`` centroids, starting from ``init`` (``INITS``), or
    from ``start`` ((k,) centroids, e.g. a layer's earlier clustering) where it is given.

    Returns ``(centroids (k,) float32 ascending, codes (n,) int64)``. Deterministic: neither
    initialisation needs randomness; ``seed`` is accepted for interface symmetry. An empty
    cluster keeps its previous centroid (it stays a valid, unused code), so a ``start`` whose
    codes were partly unused leaves at most as many codes in use as the weights reach.
    """
    del seed
    x = np.asarray(values, dtype=np.float64).ravel()
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if init not in INITS:
        raise InvalidInputError(f"init must be one of {list(INITS)}, got {init!r}")
    if x.size == 0:
        raise InvalidInputError("cannot cluster an empty set of weights")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("weights to cluster hold NaN or Inf")
    if start is not None:
        centroids = np.sort(np.asarray(start, dtype=np.float64).ravel())
        if centroids.shape != (k,) or not np.all(np.isfinite(centroids)):
            raise InvalidInputError(f"start must be {k} finite centroids, got {centroids.size}")
    else:
        centroids = sign_init(x, k) if init == "sign" else linear_init(x, k)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    csum = np.concatenate([[0.0], np.cumsum(xs)])
    for _ in range(max_iter):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        edges = np.concatenate([[0], np.searchsorted(xs, bounds, side="right"), [xs.size]])
        counts = np.diff(edges)
        sums = csum[edges[1:]] - csum[edges[:-1]]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        new = np.maximum.accumulate(new)  # 1-D Lloyd keeps the order; rounding may not
        if np.allclose(new, centroids, rtol=0, atol=1e-12):
            centroids = new
            break
        centroids = new
    return centroids.astype(np.float32), assign_codes(x, centroids.astype(np.float32))


def cluster_to_counts(
    values: np.ndarray, counts: np.ndarray, previous: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` (n,) so that code ``i`` holds exactly ``counts[i]`` of them.

    ``previous`` ((k,) centroids of the clustering ``counts`` came from) orders the codes: the
    sorted values fill them in the order of their old centroids, the smallest values the code
    whose centroid was smallest. With the sizes and that order fixed, contiguous runs of the
    sorted values are the assignment of least squared error. Each code's centroid is its
    values' mean; a code with none keeps its previous centroid (a valid, unused code, as in
    ``kmeans_1d``).
    Returns ``(centroids (k,) float32, codes (n,) int64)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    counts = np.asarray(counts, dtype=np.int64).ravel()
    previous = np.asarray(previous, dtype=np.float64).ravel()
    if counts.shape != previous.shape or np.any(counts < 0):
        raise InvalidInputError(
            f"counts must be {previous.size} non-negative sizes, got {counts.tolist()}"
        )
    if int(counts.sum()) != x.size:
        raise InvalidInputError(f"counts sum to {int(counts.sum())}, not the {x.size} values")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("weights to cluster hold NaN or Inf")
    rank = np.argsort(x, kind="stable")
    by_centroid = np.argsort(previous, kind="stable")
    edges = np.concatenate([[0], np.cumsum(counts[by_centroid])])
    codes = np.empty(x.size, dtype=np.int64)
    centroids = previous.copy()
    for code, lo, hi in zip(by_centroid, edges[:-1], edges[1:], strict=True):
        codes[rank[lo:hi]] = code
        if hi > lo:
            centroids[code] = x[rank[lo:hi]].mean()
    return centroids.astype(np.float32), codes


def rate_constrained_kmeans(
    values: np.ndarray, start: np.ndarray, weight: float, *, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy-constrained k-means from ``start`` ((k,) centroids): each value goes to the code
    of least squared distance plus ``weight`` times the code's length, ``-log2`` of its share of
    the values; then each used centroid moves to its values' mean. ``weight=0`` is Lloyd's
    k-means. With a weight, a code that empties costs infinitely many bits and stays empty (its
    centroid kept, a valid unused code). Returns ``(centroids (k,) float32, codes (n,) int64)``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise InvalidInputError("cannot cluster an empty set of weights")
    centroids = np.asarray(start, dtype=np.float64).ravel().copy()
    k = centroids.size
    codes = assign_codes(x, np.sort(centroids))
    codes = np.argsort(centroids, kind="stable")[codes]  # ``start`` need not be ascending
    for _ in range(max_iter):
        counts = np.bincount(codes, minlength=k)
        share = np.maximum(counts, 1) / x.size
        empty = np.inf if weight > 0 else 0.0  # Lloyd's k-means lets an empty code refill
        penalty = np.where(counts > 0, -weight * np.log2(share), empty)
        new = assign_penalised(x, centroids, penalty)
        counts = np.bincount(new, minlength=k)
        sums = np.bincount(new, weights=x, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.array_equal(new, codes):
            break
        codes = new
    return centroids.astype(np.float32), codes


def capped_kmeans(
    values: np.ndarray,
    start: np.ndarray,
    fits: Callable[[np.ndarray], bool],
    *,
    steps: int = 12,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``rate_constrained_kmeans`` from ``start`` at a weight whose codes ``fits`` accepts (the
    caller's byte budget), near the least: doubling finds one that fits, then ``steps``
    halvings of the bracket (fitting need not be monotonic in the weight; what is returned
    always fits); ``None`` if no weight up to about 2**40 times the values' variance fits.
    Deterministic. Each Lloyd pass of a trial costs n log k (``assign_penalised``)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    unit = float(np.var(x)) or 1.0
    low, high = 0.0, unit * 1e-4
    found = None
    for _ in range(54):  # 1e-4 .. about 2**40 times the variance
        trial = rate_constrained_kmeans(x, start, high)
        if fits(trial[1]):
            found = trial
            break
        low, high = high, high * 2
    if found is None:
        return None
    for _ in range(steps):
        middle = (low + high) / 2
        trial = rate_constrained_kmeans(x, start, middle)
        if fits(trial[1]):
            high, found = middle, trial
        else:
            low = middle
    return found


def squared_error(values: np.ndarray, centroids: np.ndarray, codes: np.ndarray) -> float:
    """Sum of squared distances of ``values`` to the centroids of their codes."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return float(np.sum((x - np.asarray(centroids, dtype=np.float64)[codes]) ** 2))


def linear_init(x: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids evenly over ``[min, max]`` (one: the mean)."""
    if k == 1:
        return np.array([x.mean()])
    return np.linspace(float(x.min()), float(x.max()), k)


def sign_init(x: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids, ascending: each sign gets a share of them in proportion to its count
    (at least one each where both signs occur) spread linearly over its own range; with one
    sign only (or k = 1) this is ``linear_init``."""
    neg, pos = x[x < 0], x[x >= 0]
    if k == 1 or neg.size == 0 or pos.size == 0:
        return linear_init(x, k)
    k_neg = min(max(round(k * neg.size / x.size), 1), k - 1)
    return np.concatenate([linear_init(neg, k_neg), linear_init(pos, k - k_neg)])


def assign_penalised(values: np.ndarray, centroids: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """For each value the code ``j`` of least ``(value - centroids[j])**2 + penalty[j]``
    (``inf`` penalties: codes never chosen; at least one must be finite), in n log k.

    The squared value is common to every code, so the least cost is the greatest of the lines
    ``2 c_j x - c_j**2 - p_j``: their upper envelope, ordered by slope, splits the line into
    intervals, one code each, and a binary search over its breakpoints assigns every value
    (instead of n x k distances). A value on a breakpoint, where two codes cost the same, may
    go to either."""
    x = np.asarray(values, dtype=np.float64).ravel()
    c = np.asarray(centroids, dtype=np.float64).ravel()
    p = np.asarray(penalty, dtype=np.float64).ravel()
    live = np.flatnonzero(np.isfinite(p))
    if live.size == 0:
        raise InvalidInputError("every code's penalty is infinite: nothing to assign to")
    slope, cut = 2 * c[live], -(c[live] ** 2) - p[live]
    order = np.lexsort((-cut, slope))  # by slope, the higher line first among equal slopes
    hull: list[int] = []  # indices into ``live``, slopes strictly rising
    breaks: list[float] = []  # where hull[i] hands over to hull[i + 1]
    for j in order:
        if hull and slope[hull[-1]] == slope[j]:
            continue  # parallel and not higher: never the greatest
        while hull:
            i = hull[-1]
            at = (cut[i] - cut[j]) / (slope[j] - slope[i])  # where j overtakes i
            if breaks and at <= breaks[-1]:
                hull.pop()  # j overtakes i before i took over: i is never the greatest
                breaks.pop()
            else:
                breaks.append(at)
                break
        hull.append(j)
    chosen = np.searchsorted(np.asarray(breaks), x, side="right")
    return live[np.asarray(hull)[chosen]].astype(np.int64)


def assign_codes(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each value; ``centroids`` must be ascending."""
    c = np.asarray(centroids, dtype=np.float64)
    bounds = (c[1:] + c[:-1]) / 2
    return np.searchsorted(bounds, np.asarray(values, dtype=np.float64), side="right").astype(
        np.int64
    )
