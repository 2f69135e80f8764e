"""Weightless: lossy Bloomier-filter weight encoding for deep neural networks.

The public API in one place: encode one tensor (``encode_layer``), compress a whole model with
the paper's layer-by-layer algorithm (``compress``), and read or write encoded-model files.

The names are imported on first use (PEP 562), so ``import weightless_core.config.settings`` (as the
API does) does not load torch; ``weightless_core.compress`` and ``from weightless_core import
compress`` work as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the submodule that defines it
_EXPORTS = {
    "CompressionResult": "method.pipeline",
    "CompressionSettings": "config.settings",
    "ConstructionError": "errors",
    "ContextCodedLayer": "baselines.context_coded",
    "DataError": "errors",
    "Dataset": "io.data",
    "DeepCompressedLayer": "baselines.deep_compression",
    "EncodedLayer": "method.layer",
    "FormatError": "errors",
    "InvalidInputError": "errors",
    "LayerOverride": "config.settings",
    "ModelLoadError": "errors",
    "Progress": "method.pipeline",
    "SizeRule": "config.settings",
    "WeightlessError": "errors",
    "compress": "method.pipeline",
    "compress_variants": "method.pipeline",
    "context_code": "baselines.context_coded",
    "deep_compress": "baselines.deep_compression",
    "encode_layer": "method.layer",
    "load": "fileformat",
    "load_dataset": "io.data",
    "load_into": "fileformat",
    "load_model": "io.modelio",
    "read_model": "fileformat",
    "save": "fileformat",
    "settings_for": "config.presets",
}

__all__ = [
    "CompressionResult",
    "CompressionSettings",
    "ConstructionError",
    "ContextCodedLayer",
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
    "context_code",
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
    from weightless_core.baselines.context_coded import ContextCodedLayer, context_code
    from weightless_core.baselines.deep_compression import DeepCompressedLayer, deep_compress
    from weightless_core.config.presets import settings_for
    from weightless_core.config.settings import CompressionSettings, LayerOverride, SizeRule
    from weightless_core.errors import (
        ConstructionError,
        DataError,
        FormatError,
        InvalidInputError,
        ModelLoadError,
        WeightlessError,
    )
    from weightless_core.fileformat import load, load_into, read_model, save
    from weightless_core.io.data import Dataset, load_dataset
    from weightless_core.io.modelio import load_model
    from weightless_core.method.layer import EncodedLayer, encode_layer
    from weightless_core.method.pipeline import (
        CompressionResult,
        Progress,
        compress,
        compress_variants,
    )
