"""What a version-1 file looks like: constants, caps, dtype codes, framing and sizes.

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

from weightless_core.errors import InvalidInputError
from weightless_core.layer import EncodedLayer

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAGIC = b"\x89WLS\r\n\x1a\n"
END_MAGIC = b"WLS\x00"
HEADER_BYTES = 16
FOOTER_BYTES = 8
MIN_FILE_BYTES = HEADER_BYTES + FOOTER_BYTES
FRAMING_BYTES = 11  # kind u8 | name_len u16 | body_len u64 (plus the name itself)

KIND_ENCODED = 1
KIND_PLAIN = 2
KIND_METADATA = 3
HASH_SPLITMIX64_V1 = 1

MAX_RECORDS = 1 << 20
MAX_NAME_BYTES = 1024
MAX_NDIM = 8
MAX_NUMEL = 1 << 40
MAX_NUM_CELLS = 3 * ((1 << 32) - 1)  # Bloomier block length B must stay below 2**32
MAX_METADATA_BYTES = 1 << 24
U64 = (1 << 64) - 1

HEADER = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<I4s")
KIND_NAMELEN = struct.Struct("<BH")
ENCODED_PARAMS = struct.Struct("<BBBBQQQQ")  # structure r t hash seed num_cells nnz fp

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

Entry = EncodedLayer | torch.Tensor
PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)
class EncodedModel:
    """A file's contents: ``entries`` in file order, plus the metadata object (``{}`` if none).

    Plain tensors are CPU ``torch.Tensor`` (not numpy) so bfloat16 survives a round trip.
    """

    entries: dict[str, Entry]
    metadata: dict[str, Any] = field(default_factory=dict)

    def encoded_layers(self) -> dict[str, EncodedLayer]:
        return {k: v for k, v in self.entries.items() if isinstance(v, EncodedLayer)}

    def original_weight_bytes(self) -> int:
        """Dense float32 bytes of the encoded layers (numerator of the weights-only ratio)."""
        return sum(4 * layer.numel for layer in self.encoded_layers().values())

    def encoded_weight_bytes(self) -> int:
        """Record-body bytes of the encoded layers (denominator of the weights-only ratio)."""
        return sum(layer.nbytes for layer in self.encoded_layers().values())

    def file_nbytes(self) -> int:
        """Exact size of the file ``to_bytes(self.entries, metadata=self.metadata)`` gives."""
        return (
            MIN_FILE_BYTES
            + metadata_nbytes(self.metadata)
            + sum(record_nbytes(name, value) for name, value in self.entries.items())
        )


def record_nbytes(name: str, value: Entry | np.ndarray) -> int:
    """Bytes the record of ``value`` named ``name`` takes in a file, framing included."""
    total = FRAMING_BYTES + len(name.encode("utf-8"))
    if isinstance(value, EncodedLayer):
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
