"""Vetoes: a one-bit table that cancels chosen false positives of a layer's table.

A layer's table reads a valid code at a pruned position with probability ``2**(r-t)``; the
paper retrains the network around those false positives. Raising t by one bit halves them, at
one bit per *kept* weight. A veto is cheaper and aimed: once the table is built its false
positives are known, so a second static function of one bit per cell is built over the kept
positions (value 0, "keep") and the false positives chosen to cancel (value 1, "veto"). A
position decodes to a weight only where the table reads a code and the veto reads 0.

Each vetoed false positive costs about one bit (plus the veto's bit for every kept weight),
and the false positives left unvetoed pass the veto's random bit with probability 1/2. So a
t-bit table plus a veto costs ``n·(t+1) + v`` bits for ``n`` kept weights and ``v`` vetoes,
and leaves about ``(F - v) / 2`` false positives of the table's ``F``; the ones vetoed are
the ones whose error costs most (``harm``), so what is left lands where it hurts least.
"""

from __future__ import annotations

import math

import numpy as np

from weightless_core.errors import InvalidInputError
from weightless_core.retrieval import STRUCTURES, RetrievalStructure
from weightless_core.retrieval.hashing import derive_seed
from weightless_core.retrieval.smallest import build_smallest

KEEP = np.ones(1, dtype=np.float32)
"""The veto's codebook: a result of 0 (keep) decodes to 1, a 1 (veto) past it to 0."""
VETO_SEED_SALT = 0x7E70
"""Mixed into the layer's seed, so the veto's hashes are independent of the table's."""


def choose_vetoes(false_positives: np.ndarray, cost: np.ndarray, share: float) -> np.ndarray:
    """The positions to veto: the ``ceil(share · F)`` of the ``F`` false positives (flat
    positions, ascending) with the largest ``cost`` (same length, aligned; ties to the lowest
    position). Returned ascending."""
    if not 0.0 <= share <= 1.0:
        raise InvalidInputError(f"veto share must be in [0, 1], got {share}")
    count = math.ceil(share * false_positives.size)
    if count >= false_positives.size:
        return false_positives
    order = np.argsort(-np.asarray(cost, dtype=np.float64), kind="stable")[:count]
    return np.sort(false_positives[order])


def build_veto(
    keys: np.ndarray, vetoes: np.ndarray, *, seed: int, structure: str | list[str]
) -> RetrievalStructure:
    """The one-bit table over ``keys`` (read 0) and ``vetoes`` (read 1), disjoint uint64
    positions; with several structure kinds, the one with the fewest cells."""
    all_keys = np.concatenate([keys, vetoes]).astype(np.uint64)
    values = np.concatenate([np.zeros(keys.size, np.uint32), np.ones(vetoes.size, np.uint32)])
    kinds = [structure] if isinstance(structure, str) else structure
    return build_smallest(
        [STRUCTURES[k] for k in kinds],
        all_keys,
        values,
        t=1,
        seed=derive_seed(seed, VETO_SEED_SALT),
    )


def passes(veto: RetrievalStructure, size: int) -> np.ndarray:
    """Whether each position ``0..size-1`` reads 0 (keep) in ``veto``."""
    out = np.empty(size, dtype=np.float32)
    veto.decode_dense(out, KEEP)
    return out != 0
