"""Weightless: lossy Bloomier-filter weight encoding for deep neural networks.

The public API in one place: encode one tensor (``encode_layer``), compress a whole model with
the paper's layer-by-layer algorithm (``compress``), and read or write encoded-model files.
"""

from weightless_core.data import Dataset, load_dataset
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
from weightless_core.pipeline import CompressionResult, Progress, compress
from weightless_core.settings import CompressionSettings, LayerOverride

__version__ = "0.1.0"

__all__ = [
    "CompressionResult",
    "CompressionSettings",
    "ConstructionError",
    "DataError",
    "Dataset",
    "EncodedLayer",
    "FormatError",
    "InvalidInputError",
    "LayerOverride",
    "ModelLoadError",
    "Progress",
    "WeightlessError",
    "compress",
    "encode_layer",
    "load",
    "load_dataset",
    "load_into",
    "load_model",
    "read_model",
    "save",
]
