"""The smallest of several retrieval structures over the same keys (``structure="auto"``)."""

from __future__ import annotations

import numpy as np

from weightless_core.errors import ConstructionError
from weightless_core.retrieval.base import RetrievalStructure


def build_smallest(
    kinds: list[type[RetrievalStructure]],
    keys: np.ndarray,
    values: np.ndarray,
    *,
    t: int,
    seed: int,
    max_attempts: int = 16,
) -> RetrievalStructure:
    """Each of ``kinds`` built over ``keys`` -> ``values``; the one with the fewest cells (ties
    to the first listed). A kind whose construction fails is passed over, so that one
    structure that cannot be built at some key count (binary fuse at 12,356 keys, before it
    grew on retries) cannot stop a run that has others to choose from; ``ConstructionError``
    names every kind's failure only if none builds."""
    best: RetrievalStructure | None = None
    failures: list[str] = []
    for kind in kinds:
        try:
            built = kind.build(keys, values, t=t, seed=seed, max_attempts=max_attempts)
        except ConstructionError as exc:
            failures.append(str(exc))
            continue
        if best is None or built.num_cells < best.num_cells:
            best = built
    if best is None:
        raise ConstructionError("; ".join(failures))
    return best
