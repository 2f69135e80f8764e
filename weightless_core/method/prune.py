"""Magnitude pruning, reached gradually: each step removes the smallest surviving weights.

A gradual schedule with fine-tuning between steps loses far less accuracy than one-shot
pruning (Han et al. 2015; Zhu & Gupta 2017). Masks only ever shrink.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from weightless_core.errors import InvalidInputError


def schedule(final_sparsity: float, steps: int) -> list[float]:
    """Sparsity after each of ``steps`` steps: the cubic ramp of Zhu & Gupta, ending at the target.

    Big cuts come first, while many redundant weights remain; the last steps are gentle.
    """
    if steps < 1:
        raise InvalidInputError(f"steps must be >= 1, got {steps}")
    return [final_sparsity * (1 - (1 - i / steps) ** 3) for i in range(1, steps + 1)]


def kept_count(numel: int, sparsity: float) -> int:
    """Weights a tensor of ``numel`` keeps at ``sparsity``: ``round((1 - sparsity) * numel)``,
    at least one."""
    return max(1, math.floor((1.0 - sparsity) * numel + 0.5))


def magnitude_mask(
    weight: torch.Tensor, sparsity: float, *, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean mask keeping the ``round((1 - sparsity) * numel)`` largest-magnitude weights.

    Ties are broken by position (stable sort), so the mask is deterministic. With ``keep``, only
    positions already kept may survive (masks never grow back).
    """
    if not 0.0 <= sparsity < 1.0:
        raise InvalidInputError(f"sparsity must be in [0, 1), got {sparsity}")
    numel = weight.numel()
    n_keep = kept_count(numel, sparsity)
    # The n_keep largest, ties to the earlier position: what a stable sort by decreasing
    # magnitude keeps, found with one partition (a float32 copy, not a sort's index arrays:
    # streaming a checkpoint needs memory for a few copies of its largest tensor, no more).
    mag = weight.detach().abs().flatten().cpu().numpy().astype(np.float32, copy=True)
    allowed = None if keep is None else keep.flatten().cpu().numpy()
    if allowed is not None:
        mag[~allowed] = -1.0
    flat = np.zeros(numel, dtype=bool)
    if n_keep > 0:
        cut = np.partition(mag, numel - n_keep)[numel - n_keep]  # the n_keep-th largest
        np.greater(mag, cut, out=flat)
        ties = np.flatnonzero(mag == cut)[: n_keep - int(flat.sum())]
        flat[ties] = True
    if allowed is not None:
        flat &= allowed
    return torch.from_numpy(flat).reshape(weight.shape).to(weight.device)


def unit_grid(
    weight: torch.Tensor, unit_sparsity: float, column_sparsity: float | None = None
) -> torch.Tensor:
    """Bool mask of ``weight``'s shape: the rows of its matrix view (dim 0) with the largest L2
    norms, ``1 - unit_sparsity`` of them, crossed with its columns (everything else) with the
    largest norms, ``1 - column_sparsity`` of them (``None``: the rows' share).

    Pruning whole rows (output units) and columns (inputs) makes a layer's live grid small, so a
    table with liveness bitmaps queries fewer positions and makes fewer false positives for the
    same kept weights. The two shares differ because the axes cost differently: a first layer's
    columns are input pixels, each a feature no later layer can recover. Ties go to the lower
    index; at least one row and column stay.
    """
    columns = unit_sparsity if column_sparsity is None else column_sparsity
    for name, share in (("unit_sparsity", unit_sparsity), ("column_sparsity", columns)):
        if not 0.0 <= share < 1.0:
            raise InvalidInputError(f"{name} must be in [0, 1), got {share}")
    w = weight.detach().reshape(weight.shape[0], -1).float()
    rows = _top(w.pow(2).sum(dim=1), unit_sparsity)
    cols = _top(w.pow(2).sum(dim=0), columns)
    return (rows[:, None] & cols[None, :]).reshape(weight.shape)


def _top(norms: torch.Tensor, sparsity: float) -> torch.Tensor:
    keep = kept_count(norms.numel(), sparsity)
    order = np.argsort(-norms.cpu().numpy().astype(np.float64), kind="stable")
    out = np.zeros(norms.numel(), dtype=bool)
    out[order[:keep]] = True
    return torch.from_numpy(out).to(norms.device)
