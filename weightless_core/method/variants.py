"""Bookkeeping for ``compress_variants``: one pruned, clustered state encoded several ways.

Pruning and clustering are shared, so variants must agree on every setting that shapes them;
the state after clustering is snapshotted once and put back before each variant is encoded.
Variants that differ only in where k-means starts (``CLUSTER_FIELDS``) share the pruning: the
state is then snapshotted after pruning and each variant clusters it its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightless_core.config.settings import CompressionSettings, LayerPlan
from weightless_core.errors import InvalidInputError
from weightless_core.method.training import Constraint

# Settings that shape pruning and clustering; ``compress_variants`` shares that work, so its
# variants must agree on them (each layer's sparsity, r and shares of whole rows and columns,
# which ``layers`` and ``size_rules`` may set, are compared per layer).
SHARED_FIELDS = (
    "method", "sparsity", "r", "encode", "min_elements", "prune_steps",
    "prune_epochs", "cluster_epochs", "batch_size", "lr", "lr_schedule", "seed", "device",
    "baseline", "distill", "regrowth", "fp_noise",
)  # fmt: skip
# Settings of clustering alone: variants may differ in them, and then share only the pruning.
CLUSTER_FIELDS = ("cluster_init",)


def clusters_differ(base: CompressionSettings, variants: Sequence[CompressionSettings]) -> bool:
    """Whether some variant clusters differently from ``base`` (so each clusters on its own)."""
    return any(getattr(v, f) != getattr(base, f) for v in variants for f in CLUSTER_FIELDS)


def check_variant(
    base: CompressionSettings, v: CompressionSettings, sizes: Mapping[str, int]
) -> None:
    """Refuse a variant that would prune or cluster differently from ``base``; ``sizes``: the
    encoded layers' element counts, by name."""
    same = {f: getattr(base, f) for f in SHARED_FIELDS}
    if {f: getattr(v, f) for f in SHARED_FIELDS} != same:
        differ = sorted(f for f in SHARED_FIELDS if getattr(v, f) != same[f])
        raise InvalidInputError(
            f"variants may differ only in how layers are encoded; these change pruning or "
            f"clustering: {differ}"
        )
    for name, numel in sizes.items():
        a, b = base.plan(name, numel), v.plan(name, numel)
        if _pruning(a) != _pruning(b):
            raise InvalidInputError(
                f"variants must keep {name}'s sparsity, r and shares of whole rows and columns "
                "pruned"
            )


@dataclass(frozen=True)
class Snapshot:
    """A run's state after clustering: weights, constraints, figures so far, the shuffling
    generator and the progress units done, so each variant starts from the same point."""

    state: dict[str, torch.Tensor]
    constraints: dict[str, Constraint]
    accuracy: dict[str, float | None]
    seconds: dict[str, float]
    generator: torch.Tensor
    units_done: int

    @classmethod
    def take(
        cls,
        model: nn.Module,
        constraints: Mapping[str, Constraint],
        accuracy: Mapping[str, float | None],
        seconds: Mapping[str, float],
        generator: torch.Generator,
        units_done: int,
    ) -> Snapshot:
        return cls(
            state={k: v.detach().clone() for k, v in model.state_dict().items()},
            constraints={n: c.clone() for n, c in constraints.items()},
            accuracy=dict(accuracy),
            seconds=dict(seconds),
            generator=generator.get_state(),
            units_done=units_done,
        )

    def restore_model(self, model: nn.Module, generator: torch.Generator) -> None:
        """Put the weights (trainable again) and the generator back."""
        with torch.no_grad():
            model.load_state_dict(self.state)
        for p in model.parameters():
            p.requires_grad_(True)
        generator.set_state(self.generator)

    def fresh_constraints(self) -> dict[str, Constraint]:
        """Copies of the constraints, as a variant changes them in place."""
        return {n: c.clone() for n, c in self.constraints.items()}


def _pruning(plan: LayerPlan) -> tuple[float, int, float, float]:
    """What of a layer's plan its pruning and clustering depend on."""
    return (plan.sparsity, plan.r, plan.unit_sparsity, plan.column_sparsity)
