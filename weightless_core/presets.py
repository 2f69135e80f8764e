"""Named settings users pick instead of knobs: ``default``, ``fast``, ``paper`` and ``max``.

* ``paper``: the recipe of Reagen et al. as the paper describes it: Deep Compression's pruning
  level (8 % kept) and 16 clusters, t = 9 (where the paper's t curve flattens), encoded layers
  frozen (codebooks included), later layers retrained between encodings.
* ``max``: the smallest file we found within the iso-accuracy rule (dense accuracy minus 0.2
  points). Its per-size values come from ``benchmarks/search_presets.py``, which writes
  ``presets/max.json`` together with the path the search took; nothing here is hand-tuned.

Size rules (``SizeRule``) key values on a tensor's element count, not its name, so a preset fits
any model. Explicit settings always win over a preset's.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from weightless_core.errors import InvalidInputError
from weightless_core.settings import CompressionSettings, SizeRule

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# Retraining long enough that pruning and clustering alone stay within noise of the dense model
# (LeNet-300-100 on Fashion-MNIST: 89.0% dense, 89.0% clustered; one epoch per stage loses 1.9).
_THOROUGH: dict[str, Any] = {
    "prune_steps": 5,
    "prune_epochs": 3,
    "cluster_epochs": 3,
    "retrain_epochs": 3,
}

_FIXED: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"prune_steps": 1, "prune_epochs": 1, "cluster_epochs": 0, "retrain_epochs": 0},
    "paper": {
        **_THOROUGH,
        "sparsity": 0.92,
        "r": 4,
        "t": 9,
        "finetune_codebooks": False,
        "later_layers": "recluster",
    },
}
NAMES = ("default", "fast", "paper", "max")


@cache
def _searched(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"preset {name!r} cannot be read from {path}: {e}") from None
    values = dict(doc["settings"])
    values["size_rules"] = tuple(SizeRule(**rule) for rule in values.get("size_rules", ()))
    return values


def preset_values(name: str) -> dict[str, Any]:
    """The settings a preset sets (a fresh dict; callers may add to it)."""
    if name in _FIXED:
        return dict(_FIXED[name])
    if name == "max":
        return dict(_searched("max"))
    raise InvalidInputError(f"unknown preset {name!r}; choose from {list(NAMES)}")


def search_record(name: str) -> dict[str, Any]:
    """What ``benchmarks/search_presets.py`` stored for a searched preset (settings, path, data)."""
    path = PRESET_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def settings_for(name: str, **overrides: Any) -> CompressionSettings:
    """``CompressionSettings`` of preset ``name`` with ``overrides`` (not ``None``) on top."""
    values = preset_values(name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return CompressionSettings(**values)
