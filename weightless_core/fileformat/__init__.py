"""The encoded-model file format, versions 1 to 6 (``docs/format.md`` is normative).

A file is a header, one record per tensor (encoded layer, plain tensor, JSON metadata, from
version 2 on a Deep Compression layer, from version 6 on a context-coded layer) and a CRC-32
footer. Encoded layers use the Bloomier
filter, or from version 3 on a binary fuse structure. Writing is deterministic and
atomic; reading validates every byte before handing anything out, so a bad file raises a named
``FormatError`` and never an ``IndexError``.

Layout: ``spec`` (constants, dtype codes, sizes), ``checks`` (rules shared by writer and
reader), ``writer``, ``reader`` and ``state`` (dense tensors from a file).
"""

from __future__ import annotations

from weightless_core.fileformat.reader import from_bytes, read_model
from weightless_core.fileformat.spec import (
    END_MAGIC,
    FOOTER_BYTES,
    FORMAT_VERSION,
    FRAMING_BYTES,
    HASH_SPLITMIX64_V1,
    HEADER_BYTES,
    KIND_CONTEXT_CODED,
    KIND_DEEP_COMPRESSION,
    KIND_ENCODED,
    KIND_METADATA,
    KIND_PLAIN,
    MAGIC,
    MAX_METADATA_BYTES,
    MAX_NAME_BYTES,
    MAX_NDIM,
    MAX_NUM_CELLS,
    MAX_NUMEL,
    MAX_RECORDS,
    MIN_FILE_BYTES,
    SPARSE_LAYERS,
    SUPPORTED_VERSIONS,
    EncodedModel,
    Entry,
    PathLike,
    file_version,
    metadata_nbytes,
    record_nbytes,
)
from weightless_core.fileformat.state import load, load_into
from weightless_core.fileformat.writer import save, to_bytes

__all__ = [
    "END_MAGIC",
    "FOOTER_BYTES",
    "FORMAT_VERSION",
    "FRAMING_BYTES",
    "HASH_SPLITMIX64_V1",
    "HEADER_BYTES",
    "KIND_CONTEXT_CODED",
    "KIND_DEEP_COMPRESSION",
    "KIND_ENCODED",
    "KIND_METADATA",
    "KIND_PLAIN",
    "MAGIC",
    "MAX_METADATA_BYTES",
    "MAX_NAME_BYTES",
    "MAX_NDIM",
    "MAX_NUMEL",
    "MAX_NUM_CELLS",
    "MAX_RECORDS",
    "MIN_FILE_BYTES",
    "SPARSE_LAYERS",
    "SUPPORTED_VERSIONS",
    "EncodedModel",
    "Entry",
    "PathLike",
    "file_version",
    "from_bytes",
    "load",
    "load_into",
    "metadata_nbytes",
    "read_model",
    "record_nbytes",
    "save",
    "to_bytes",
]
