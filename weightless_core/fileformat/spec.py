"""What a file looks like: constants, caps, dtype codes, framing, versions and sizes.

Writer and reader both build on these tables, so the two can never disagree about the layout.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from weightless_core.baselines.context_coded import ContextCodedLayer
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.errors import InvalidInputError
from weightless_core.method.layer import EncodedLayer
from weightless_core.retrieval import BY_CODE

# Version 2 adds record kind 4, version 3 the binary fuse structures (codes 2 and 3) in kind-1
# records, version 4 ribbon retrieval (code 4) and record kind 5 (a table of the live grid),
# version 5 record kind 6 (a table with a veto of chosen false positives), version 6 record kind
# 7 (a context-coded sparse layer). A
# file is written at the lowest version that holds it, so a file without them is byte for byte
# what earlier releases wrote, and older readers keep reading all they could.
FORMAT_VERSION = 6  # the latest version (written only when a file needs it)
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5, 6)
MAGIC = b"\x89WLS\r\n\x1a\n"
END_MAGIC = b"WLS\x00"
HEADER_BYTES = 16
FOOTER_BYTES = 8
MIN_FILE_BYTES = HEADER_BYTES + FOOTER_BYTES
FRAMING_BYTES = 11  # kind u8 | name_len u16 | body_len u64 (plus the name itself)

KIND_ENCODED = 1
KIND_PLAIN = 2
KIND_METADATA = 3
KIND_DEEP_COMPRESSION = 4  # version >= 2 only
KIND_ENCODED_LIVE = 5  # version >= 4 only: kind 1 plus liveness bitmaps, keys in the live grid
KIND_ENCODED_VETO = 6  # version >= 5 only: kind 1 or 5 plus a one-bit veto table
KIND_CONTEXT_CODED = 7  # version >= 6 only: positions and codes by an adaptive range coder
KIND_NAMES = {
    KIND_ENCODED: "encoded layer",
    KIND_PLAIN: "plain tensor",
    KIND_METADATA: "metadata",
    KIND_DEEP_COMPRESSION: "Deep Compression layer",
    KIND_ENCODED_LIVE: "encoded layer with liveness",
    KIND_ENCODED_VETO: "encoded layer with a veto",
    KIND_CONTEXT_CODED: "context-coded layer",
}
MIN_VERSION_OF_KIND = {
    KIND_ENCODED: 1,
    KIND_PLAIN: 1,
    KIND_METADATA: 1,
    KIND_DEEP_COMPRESSION: 2,
    KIND_ENCODED_LIVE: 4,
    KIND_ENCODED_VETO: 5,
    KIND_CONTEXT_CODED: 6,
}
# Retrieval structure code (kinds 1 and 5) -> first version that has it (each structure's
# ``min_version``): 1 = Bloomier filter, 2 = binary fuse 3-wise, 3 = binary fuse 4-wise, 4 = ribbon.
MIN_VERSION_OF_STRUCTURE = {code: s.min_version for code, s in BY_CODE.items()}
HASH_SPLITMIX64_V1 = 1

MAX_RECORDS = 1 << 20
MAX_NAME_BYTES = 1024
MAX_NDIM = 8
MAX_NUMEL = 1 << 40
MAX_NUM_CELLS = 3 * ((1 << 32) - 1)  # Bloomier block length B must stay below 2**32 (any kind)
MAX_METADATA_BYTES = 1 << 24
U64 = (1 << 64) - 1

HEADER = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<I4s")
KIND_NAMELEN = struct.Struct("<BH")
ENCODED_PARAMS = struct.Struct("<BBBBQQQQ")  # structure r t hash seed num_cells nnz fp
VETO_PARAMS = struct.Struct("<BBQQ")  # has_liveness structure seed num_cells (kind 6)
DEEP_PARAMS = struct.Struct("<BBQQQQ")  # r index_bits nnz entries code_bits gap_bits
CONTEXT_PARAMS = struct.Struct("<BBQQQ")  # r flags width nnz stream_len (kind 7)

# dtype code -> (torch dtype, little-endian storage dtype). bfloat16 is stored as its int16 bit
# pattern (numpy has no bfloat16) and bool as one byte that must be 0 or 1.
DTYPES: dict[int, tuple[torch.dtype, str]] = {
    1: (torch.float32, "<f4"),
    2: (torch.float16, "<f2"),
    3: (torch.bfloat16, "<i2"),
    4: (torch.float64, "<f8"),
    5: (torch.int64, "<i8"),
    6: (torch.int32, "<i4"),
    7: (torch.int16, "<i2"),
    8: (torch.int8, "<i1"),
    9: (torch.uint8, "<u1"),
    10: (torch.bool, "<u1"),
}
TORCH_CODES = {dt: code for code, (dt, _) in DTYPES.items()}
NUMPY_CODES = {  # (kind, itemsize) so byte order does not matter on input
    ("f", 4): 1,
    ("f", 2): 2,
    ("f", 8): 4,
    ("i", 8): 5,
    ("i", 4): 6,
    ("i", 2): 7,
    ("i", 1): 8,
    ("u", 1): 9,
    ("b", 1): 10,
}

Entry = EncodedLayer | DeepCompressedLayer | ContextCodedLayer | torch.Tensor
PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)
class EncodedModel:
    """A file's contents: ``entries`` in file order, plus the metadata object (``{}`` if none).

    Plain tensors are CPU ``torch.Tensor`` (not numpy) so bfloat16 survives a round trip.
    """

    entries: dict[str, Entry]
    metadata: dict[str, Any] = field(default_factory=dict)

    def encoded_layers(self) -> dict[str, EncodedLayer]:
        """The layers in a retrieval structure (kind 1: Bloomier or binary fuse)."""
        return {k: v for k, v in self.entries.items() if isinstance(v, EncodedLayer)}

    def deep_compressed_layers(self) -> dict[str, DeepCompressedLayer]:
        """The Deep Compression layers (kind 4)."""
        return {k: v for k, v in self.entries.items() if isinstance(v, DeepCompressedLayer)}

    def context_coded_layers(self) -> dict[str, ContextCodedLayer]:
        """The context-coded layers (kind 7)."""
        return {k: v for k, v in self.entries.items() if isinstance(v, ContextCodedLayer)}

    def _weight_layers(self) -> list[EncodedLayer | DeepCompressedLayer | ContextCodedLayer]:
        return [v for v in self.entries.values() if isinstance(v, WEIGHT_LAYERS)]

    def original_weight_bytes(self) -> int:
        """Dense float32 bytes of the encoded layers, every kind (weights-only numerator)."""
        return sum(4 * layer.numel for layer in self._weight_layers())

    def encoded_weight_bytes(self) -> int:
        """Record-body bytes of the encoded layers, every kind (weights-only denominator)."""
        return sum(layer.nbytes for layer in self._weight_layers())

    def file_nbytes(self) -> int:
        """Exact size of the file ``to_bytes(self.entries, metadata=self.metadata)`` gives."""
        return (
            MIN_FILE_BYTES
            + metadata_nbytes(self.metadata)
            + sum(record_nbytes(name, value) for name, value in self.entries.items())
        )


WEIGHT_LAYERS = (EncodedLayer, DeepCompressedLayer, ContextCodedLayer)
SPARSE_LAYERS = (DeepCompressedLayer, ContextCodedLayer)  # exact: no false positives


def file_version(entries: Mapping[str, object]) -> int:
    """The version a file of ``entries`` is written as: the lowest one that holds them all."""
    version = 1
    for v in entries.values():
        if isinstance(v, DeepCompressedLayer):
            version = max(version, MIN_VERSION_OF_KIND[KIND_DEEP_COMPRESSION])
        elif isinstance(v, ContextCodedLayer):
            version = max(version, MIN_VERSION_OF_KIND[KIND_CONTEXT_CODED])
        elif isinstance(v, EncodedLayer):
            # An unknown code keeps version 1 here; the writer refuses the layer itself.
            version = max(version, MIN_VERSION_OF_STRUCTURE.get(v.structure.code, 1))
            if v.live is not None:
                version = max(version, MIN_VERSION_OF_KIND[KIND_ENCODED_LIVE])
            if v.veto is not None:
                version = max(version, MIN_VERSION_OF_KIND[KIND_ENCODED_VETO])
                version = max(version, MIN_VERSION_OF_STRUCTURE.get(v.veto.code, 1))
    return version


def record_nbytes(name: str, value: Entry | np.ndarray) -> int:
    """Bytes the record of ``value`` named ``name`` takes in a file, framing included."""
    total = FRAMING_BYTES + len(name.encode("utf-8"))
    if isinstance(value, WEIGHT_LAYERS):
        return total + value.nbytes
    if isinstance(value, np.ndarray):
        return total + 2 + 8 * value.ndim + value.nbytes
    return total + 2 + 8 * value.dim() + value.numel() * value.element_size()


def metadata_nbytes(metadata: Mapping[str, Any] | None) -> int:
    """Bytes of the metadata record (0 when there is none)."""
    return FRAMING_BYTES + len(metadata_body(metadata)) if metadata else 0


def metadata_body(metadata: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes of ``metadata`` (sorted keys, no spaces), so output is stable."""
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a mapping, got {type(metadata).__name__}")
    try:
        text = json.dumps(
            dict(metadata),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        body = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidInputError(f"metadata is not a JSON object with string keys: {e}") from e
    if len(body) > MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"metadata is {len(body)} bytes of JSON, at most {MAX_METADATA_BYTES} are allowed"
        )
    return body
