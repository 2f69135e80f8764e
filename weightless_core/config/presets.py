"""Named settings users pick instead of knobs: ``default``, ``fast``, ``paper`` and ``max``.

* ``paper``: the recipe of Reagen et al. as the paper describes it: Deep Compression's pruning
  level (8 % kept) and 16 clusters, t = 9 (where the paper's t curve flattens), Bloomier tables,
  encoded layers frozen (codebooks included), later layers retrained between encodings.
* ``default``: quick, each layer no larger than Deep Compression of its weights: every layer
  is stored as its table, as Deep Compression or context-coded, whichever is smallest
  (``hybrid``, ``context_coding``), in the
  smallest retrieval structure (``structure="auto"``); the largest layers are pruned far enough
  and stored at a small enough t that their tables can win; small ones (400-999 elements, a
  conv stem) are clustered unpruned and kept so.
* ``max``: the smallest weights we found within the iso-accuracy rule on the validation split,
  with everything that lets a layer tolerate a small t: pruning with regrowth and whole units,
  liveness bitmaps, the largest layer encoded first, distillation, the table seed chosen by
  training loss. Its values and the runs that chose them are in docs/presets.md.

Size rules (``SizeRule``) key values on a tensor's element count, not its name, so a preset fits
any model; larger tensors are pruned further and stored at smaller t (they hold more redundant
weights, and a table's false positives cost a large layer the least per weight). Explicit
settings always win over a preset's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from weightless_core.config.settings import CompressionSettings, SizeRule
from weightless_core.errors import InvalidInputError

# Retraining long enough that pruning and clustering alone stay within noise of the dense model
# (LeNet-300-100 on Fashion-MNIST: 89.0% dense, 89.0% clustered; one epoch per stage loses 1.9).
_THOROUGH: dict[str, Any] = {
    "prune_steps": 5,
    "prune_epochs": 3,
    "cluster_epochs": 3,
    "retrain_epochs": 3,
}
# What lets a table win: the smallest structure per layer, Deep Compression or the context coder
# where one of them is smaller, a table of the live grid only, the largest layer first, a cosine
# schedule within each stage.
_TABLES: dict[str, Any] = {
    "structure": "auto",
    "hybrid": True,
    "context_coding": True,
    "liveness": True,
    "encode_order": "size",
    "lr_schedule": "cosine",
    "regrowth": True,
    "distill": 0.5,
}

# Tensors under 1,000 elements (conv stems, depthwise kernels) are encoded only when
# ``min_elements`` lets them in; a few hundred weights pruned to the global 8 % empty whole
# filters (a depthwise model fell to chance), so they keep half.
_SMALL = SizeRule(1, sparsity=0.5, r=3, t=12)
# `default` encodes them unpruned, at 16 values, and never releases them after a table: a conv
# stem every feature passes through is clustered once (BENCHMARKS.md `default_shared_stem_16`).
_STEM = SizeRule(1, sparsity=0.0, r=4, t=12)

_FIXED: dict[str, dict[str, Any]] = {
    "default": {
        **_TABLES,
        "prune_steps": 4,
        "prune_epochs": 1,
        "cluster_epochs": 1,
        "retrain_epochs": 1,
        "seed_candidates": 2,
        "min_elements": 400,
        "shared_below": 1_000,
        "size_rules": (
            _STEM,
            # a logits layer of 10 x 100 keeps a quarter (BENCHMARKS.md `default_quarter_head`)
            SizeRule(1_000, sparsity=0.75, r=3, t=10),
            SizeRule(2_000, sparsity=0.9, r=3, t=10),
            SizeRule(10_000, sparsity=0.95, r=3, t=10),
            SizeRule(100_000, sparsity=0.97, r=2, t=8, unit_sparsity=0.3),
            SizeRule(300_000, sparsity=0.99, r=2, t=7, unit_sparsity=0.4),
        ),
    },
    "fast": {"prune_steps": 1, "prune_epochs": 1, "cluster_epochs": 0, "retrain_epochs": 0},
    "paper": {
        **_THOROUGH,
        "sparsity": 0.92,
        "r": 4,
        "t": 9,
        "finetune_codebooks": False,
        "later_layers": "recluster",
    },
    "max": {
        **_TABLES,
        "retrain_after_lossless": False,
        "seed_candidates": 8,
        "veto": 0.75,
        "recluster_from": "used",
        "min_elements": 400,
        "prune_steps": 10,
        "prune_epochs": 6,
        "cluster_epochs": 6,
        "retrain_epochs": 6,
        "size_rules": (
            _SMALL,
            # from 2,000: a logits layer of 10 x 100 keeps half (BENCHMARKS.md `small_head`)
            SizeRule(2_000, sparsity=0.93, r=3, t=12),
            SizeRule(10_000, sparsity=0.97, r=3, t=12),
            # LeNet-300-100's fc1 keeps 1.75 % (BENCHMARKS.md `first_layer_175`)
            SizeRule(100_000, sparsity=0.9825, r=2, t=9, unit_sparsity=0.3),
            SizeRule(300_000, sparsity=0.992, r=1, t=4, unit_sparsity=0.7),
        ),
    },
}
NAMES = ("default", "fast", "paper", "max")


def preset_values(name: str) -> dict[str, Any]:
    """The settings a preset sets (a fresh dict; callers may add to it)."""
    if name in _FIXED:
        return dict(_FIXED[name])
    raise InvalidInputError(f"unknown preset {name!r}; choose from {list(NAMES)}")


def settings_for(name: str, **overrides: Any) -> CompressionSettings:
    """``CompressionSettings`` of preset ``name`` with ``overrides`` (not ``None``) on top.

    A value given globally (``sparsity=0.95``) wins over the preset's per-size values of it
    too: explicit settings always win over a preset's.
    """
    values = preset_values(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    if values.get("size_rules"):
        values["size_rules"] = tuple(_yield_to(rule, given) for rule in values["size_rules"])
    values.update(given)
    return CompressionSettings(**values)


def _yield_to(rule: SizeRule, given: Mapping[str, Any]) -> SizeRule:
    """``rule`` without the per-size values that explicit global ones replace.

    ``unit_sparsity`` given means rows and columns both, so it clears a rule's column share
    too; ``column_sparsity`` given must also beat a rule's ``unit_sparsity``, which would set
    the columns at the rule's level, so the rule takes it explicitly.
    """
    cleared = [k for k in _PER_SIZE if k in given]
    if "unit_sparsity" in given:
        cleared.append("column_sparsity")
    rule = replace(rule, **dict.fromkeys(cleared))
    if "column_sparsity" in given and rule.unit_sparsity is not None:
        rule = replace(rule, column_sparsity=given["column_sparsity"])
    return rule


# the fields a SizeRule may set
_PER_SIZE = ("sparsity", "r", "t", "unit_sparsity", "column_sparsity")
