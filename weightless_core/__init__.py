"""Weightless: lossy Bloomier-filter weight encoding for deep neural networks.

The public API in one place: encode one tensor (``encode_layer``), compress a whole model with
the paper's layer-by-layer algorithm (``compress``), and read or write encoded-model files.

The names are imported on first use (PEP 562), so ``import weightless_core.settings`` (as the
API does) does not load torch; ``weightless_core.compress`` and ``from weightless_core import
compress`` work as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the submodule that defines it
_EXPORTS = {
    "CompressionResult": "pipeline",
    "CompressionSettings": "settings",
    "ConstructionError": "errors",
    "DataError": "errors",
    "Dataset": "data",
    "DeepCompressedLayer": "deep_compression",
    "EncodedLayer": "layer",
    "FormatError": "errors",
    "InvalidInputError": "errors",
    "LayerOverride": "settings",
    "ModelLoadError": "errors",
    "Progress": "pipeline",
    "SizeRule": "settings",
    "WeightlessError": "errors",
    "compress": "pipeline",
    "compress_variants": "pipeline",
    "deep_compress": "deep_compression",
    "encode_layer": "layer",
    "load": "fileformat",
    "load_dataset": "data",
    "load_into": "fileformat",
    "load_model": "modelio",
    "read_model": "fileformat",
    "save": "fileformat",
    "settings_for": "presets",
}

__all__ = [
    "CompressionResult",
    "CompressionSettings",
    "ConstructionError",
    "DataError",
    "Dataset",
    "DeepCompressedLayer",
    "EncodedLayer",
    "FormatError",
    "InvalidInputError",
    "LayerOverride",
    "ModelLoadError",
    "Progress",
    "SizeRule",
    "WeightlessError",
    "compress",
    "compress_variants",
    "deep_compress",
    "encode_layer",
    "load",
    "load_dataset",
    "load_into",
    "load_model",
    "read_model",
    "save",
    "settings_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from weightless_core.data import Dataset, load_dataset
    from weightless_core.deep_compression import DeepCompressedLayer, deep_compress
    from weightless_core.errors import (
        ConstructionError,
        DataError,
        FormatError,
        InvalidInputError,
        ModelLoadError,
        WeightlessError,
    )
    from weightless_core.fileformat import load, load_into, read_model, save
    from weightless_core.layer import EncodedLayer, encode_layer
    from weightless_core.modelio import load_model
    from weightless_core.pipeline import CompressionResult, Progress, compress, compress_variants
    from weightless_core.presets import settings_for
    from weightless_core.settings import CompressionSettings, LayerOverride, SizeRule
