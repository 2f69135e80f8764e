"""Compression within an accuracy budget: the user says how much accuracy may go, not how.

``compress_within_budget(model, data, max_accuracy_drop=0.5)`` searches each encoded layer's
sparsity, r and t (largest layer first, its bytes dominate) against ``data``'s validation split and
returns the smallest run whose final accuracy is within ``max_accuracy_drop`` points of the dense
model, with every configuration it evaluated (the path it took). It is the greedy search behind the
``max`` preset (``weightless_core.method.preset_search``) with one group per layer instead of one
per size class. Each evaluation is a whole compression run (the t values of a layer share one
pruning pass), so the cost is stated up front by ``evaluations_bound`` and capped by
``time_budget``: once it is spent no new evaluation starts and the best run so far is returned.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from weightless_core.config.setting_schema import SEARCH_SECONDS
from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.errors import InvalidInputError
from weightless_core.io.data import Dataset
from weightless_core.method.pipeline import CompressionResult, resolve_device, select_targets
from weightless_core.method.preset_search import (
    CLASSES,
    R_LEVELS,
    SPARSITY_LEVELS,
    T_MARGIN,
    ClassValues,
    SearchResult,
    greedy_search,
)
from weightless_core.method.training import accuracy, parameters_by_name


@dataclass
class BudgetResult:
    """The chosen run and the search that found it (``search.to_dict()`` is its path)."""

    result: CompressionResult
    search: SearchResult
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return {"within_budget": self.within_budget, **self.search.to_dict()}


def clone(model: nn.Module) -> nn.Module:
    """An independent copy; TorchScript modules go through a save/load round trip in memory
    (``deepcopy`` of a ScriptModule gives parameters that cannot be trained)."""
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(model, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)
    return copy.deepcopy(model)


def layer_levels(numel: int) -> tuple[float, ...]:
    """Sparsities tried for a tensor of ``numel`` elements: those of its size class."""
    for name, smallest in CLASSES.items():
        if numel >= smallest:
            return SPARSITY_LEVELS[name]
    return SPARSITY_LEVELS["small"]


_MOST_LEVELS = max(len(v) for v in SPARSITY_LEVELS.values())


def evaluations_bound(
    layers: int, *, levels: int = _MOST_LEVELS, r_levels: int = len(R_LEVELS)
) -> int:
    """At most this many compression runs: 3 starts, then per layer every (sparsity, r) pair
    and one shared-pruning pass for its t values."""
    return 3 + layers * (levels * r_levels + 1)


def compress_within_budget(
    model: nn.Module,
    data: Dataset,
    *,
    max_accuracy_drop: float,
    base: CompressionSettings | None = None,
    time_budget: float = SEARCH_SECONDS,
    levels: Mapping[str, tuple[float, ...]] | None = None,
    r_levels: tuple[int, ...] = R_LEVELS,
    t_margin: int = T_MARGIN,
    baseline: bool = False,
    log: Callable[[str], None] | None = None,
) -> BudgetResult:
    """The smallest compression of ``model`` found within ``max_accuracy_drop`` points.

    ``base`` gives every other setting (epochs, structure, seed...); its per-layer sparsity, r
    and t are what the search sets. ``levels`` (layer name -> sparsities, least first) overrides
    the size-class defaults. If no configuration keeps the budget, the most accurate one tried
    is returned with ``within_budget`` false. ``baseline`` runs Deep Compression on every
    evaluated run's weights too (for comparisons on the same weights; costs a little per run).
    """
    if not 0 <= max_accuracy_drop <= 100:
        raise InvalidInputError(
            f"max_accuracy_drop must be between 0 and 100 points, got {max_accuracy_drop}"
        )
    if time_budget < 0:
        raise InvalidInputError(f"time_budget must be >= 0 seconds, got {time_budget}")
    base = base or CompressionSettings()
    pristine = clone(model)
    device = resolve_device(base.device)
    # Without labels the score is agreement or fidelity with the dense model, 100 for itself.
    dense = (
        accuracy(clone(pristine).to(device), data.x_val, data.y_val, device=device)
        if data.labelled
        else 100.0
    )
    params = parameters_by_name(pristine)
    names = sorted(select_targets(params, base.with_(layers={})), key=lambda n: -params[n].numel())
    per_layer = {n: tuple((levels or {}).get(n) or layer_levels(params[n].numel())) for n in names}

    def apply(settings: CompressionSettings, cfg: Mapping[str, ClassValues]) -> CompressionSettings:
        layers = {n: LayerOverride(sparsity=v.sparsity, r=v.r, t=v.t) for n, v in cfg.items()}
        return settings.with_(layers=layers, size_rules=(), baseline=baseline)

    search = greedy_search(
        lambda: clone(pristine), data, base, groups=names, levels=per_layer,
        apply=apply, dense_accuracy=dense, budget=max_accuracy_drop, time_budget=time_budget,
        t_margin=t_margin, r_levels=r_levels, log=log,
    )  # fmt: skip
    if search.result is None:
        raise InvalidInputError("the model has no tensor to encode")
    return BudgetResult(search.result, search, search.feasible)
