"""Writing files: deterministic bytes, streamed, and atomic on disk.

Every entry is checked with the reader's own rules (``checks``) before a byte of it is written,
so a bad entry is an ``InvalidInputError`` here rather than an unreadable file later.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from weightless_core.baselines.context_coded import FLAG_LIVENESS, ContextCodedLayer
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.errors import InvalidInputError
from weightless_core.fileformat.checks import (
    context_layer_problem,
    deep_layer_problem,
    layer_problem,
    live_problem,
    name_problem,
    shape_problem,
    veto_problem,
)
from weightless_core.fileformat.spec import (
    CONTEXT_PARAMS,
    DEEP_PARAMS,
    DTYPES,
    ENCODED_PARAMS,
    END_MAGIC,
    FOOTER,
    FOOTER_BYTES,
    HASH_SPLITMIX64_V1,
    HEADER,
    KIND_CONTEXT_CODED,
    KIND_DEEP_COMPRESSION,
    KIND_ENCODED,
    KIND_ENCODED_LIVE,
    KIND_ENCODED_VETO,
    KIND_METADATA,
    KIND_NAMELEN,
    KIND_PLAIN,
    MAGIC,
    MAX_RECORDS,
    NUMPY_CODES,
    TORCH_CODES,
    VETO_PARAMS,
    PathLike,
    file_version,
    metadata_body,
)
from weightless_core.io.atomic import atomic_open
from weightless_core.method.layer import EncodedLayer

Writable = EncodedLayer | DeepCompressedLayer | ContextCodedLayer | torch.Tensor | np.ndarray


def to_bytes(
    entries: Mapping[str, Writable],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """The file for ``entries`` (file order = mapping order) as bytes; see ``save``."""
    chunks: list[bytes] = []
    _write(chunks.append, entries, metadata)
    return b"".join(chunks)


def save(
    path: PathLike,
    entries: Mapping[str, Writable],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Write the file atomically and return its size in bytes.

    Records stream into a temporary file next to ``path`` that is renamed over it only once
    complete, so a failure (bad entry, full disk, Ctrl-C) leaves ``path`` as it was and no
    temporary file behind. Equal inputs always give identical bytes.
    """
    if isinstance(path, Mapping):  # save(entries, path): the order of torch.save
        raise InvalidInputError(
            "save(path, entries): give the file's path first and the tensors by name second"
        )
    with atomic_open(os.path.abspath(os.fspath(path)), "wb", fsync=True) as f:
        return _write(f.write, entries, metadata)


def _write(
    sink: Callable[[bytes], object],
    entries: Mapping[str, Writable],
    metadata: Mapping[str, Any] | None,
) -> int:
    """Stream the file into ``sink`` chunk by chunk; returns the bytes written."""
    crc = 0
    size = 0
    for chunk in _file_chunks(entries, metadata):
        sink(chunk)
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    sink(FOOTER.pack(crc, END_MAGIC))
    return size + FOOTER_BYTES


def _file_chunks(
    entries: Mapping[str, Writable],
    metadata: Mapping[str, Any] | None,
) -> Iterator[bytes]:
    if not isinstance(entries, Mapping):
        raise InvalidInputError(f"entries must be a mapping name -> tensor, got {type(entries)}")
    meta = metadata_body(metadata) if metadata else None
    count = len(entries) + (meta is not None)
    if count > MAX_RECORDS:
        raise InvalidInputError(f"at most {MAX_RECORDS} records per file, got {count}")
    # The lowest version that holds every record (1 unless a kind-4 record or a binary fuse
    # layer needs 2 or 3), so files without them stay readable by old readers.
    yield HEADER.pack(MAGIC, file_version(entries), 0, count)
    if meta is not None:
        yield _framing(KIND_METADATA, b"", len(meta))
        yield meta
    for name, value in entries.items():
        encoded_name = _encode_name(name)
        if isinstance(value, EncodedLayer):
            body = _encoded_body(name, value)
            kind = KIND_ENCODED if value.live is None else KIND_ENCODED_LIVE
            if value.veto is not None:
                kind = KIND_ENCODED_VETO
            yield _framing(kind, encoded_name, len(body))
            yield body
        elif isinstance(value, DeepCompressedLayer):
            body = _deep_body(name, value)
            yield _framing(KIND_DEEP_COMPRESSION, encoded_name, len(body))
            yield body
        elif isinstance(value, ContextCodedLayer):
            body = _context_body(name, value)
            yield _framing(KIND_CONTEXT_CODED, encoded_name, len(body))
            yield body
        elif isinstance(value, torch.Tensor | np.ndarray):
            head, data = _plain_body(name, value)
            yield _framing(KIND_PLAIN, encoded_name, len(head) + len(data))
            yield head
            yield data
        else:
            raise InvalidInputError(
                f"entry {name!r} must be an EncodedLayer, DeepCompressedLayer, "
                "ContextCodedLayer, torch.Tensor or numpy array, "
                f"got {type(value).__name__}"
            )


def _framing(kind: int, name: bytes, body_len: int) -> bytes:
    return KIND_NAMELEN.pack(kind, len(name)) + name + struct.pack("<Q", body_len)


def _encode_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise InvalidInputError(f"entry names must be str, got {type(name).__name__} {name!r}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(f"entry name {name!r} is not encodable as UTF-8") from e
    problem = name_problem(raw)
    if problem:
        raise InvalidInputError(f"entry name {name[:80]!r}: {problem}")
    return raw


def _encoded_body(name: str, layer: EncodedLayer) -> bytes:
    s = layer.structure
    codebook = np.asarray(layer.codebook)
    problem = shape_problem(layer.shape, min_ndim=1, min_dim=1)
    if not problem and layer.live is not None:
        problem = live_problem(layer.live, layer.shape)
    problem = problem or layer_problem(
        numel=layer.queried,
        code=s.code,
        r=layer.r,
        t=s.t,
        seed=s.seed,
        num_cells=s.num_cells,
        nnz=layer.nnz,
        false_positives=layer.false_positives,
        codebook=codebook,
    )
    if not problem and layer.veto is not None:
        problem = veto_problem(layer.veto.code, layer.veto.t, layer.veto.seed, layer.veto.num_cells)
    if problem:
        raise InvalidInputError(f"encoded layer {name!r}: {problem}")
    table = s.table_bytes()
    veto = layer.veto
    return b"".join(
        (
            _shape_bytes(layer.shape),
            ENCODED_PARAMS.pack(
                s.code,
                layer.r,
                s.t,
                HASH_SPLITMIX64_V1,
                s.seed,
                s.num_cells,
                layer.nnz,
                layer.false_positives,
            ),
            codebook.astype("<f4").tobytes(),
            b""
            if veto is None
            else VETO_PARAMS.pack(layer.live is not None, veto.code, veto.seed, veto.num_cells),
            b"" if layer.live is None else layer.live.to_bytes(),
            b"" if veto is None else veto.table_bytes(),
            table,
        )
    )


def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    """A record's shape as every kind begins its body: ndim, then each dimension (u64)."""
    return struct.pack(f"<B{len(shape)}Q", len(shape), *shape)


def _deep_body(name: str, layer: DeepCompressedLayer) -> bytes:
    problem = deep_layer_problem(layer)
    if problem:
        raise InvalidInputError(f"Deep Compression layer {name!r}: {problem}")
    return b"".join(
        (
            _shape_bytes(layer.shape),
            DEEP_PARAMS.pack(
                layer.r,
                layer.index_bits,
                layer.nnz,
                layer.entries,
                layer.code_bits,
                layer.gap_bits,
            ),
            np.asarray(layer.codebook).astype("<f4").tobytes(),
            np.asarray(layer.code_lengths).astype(np.uint8).tobytes(),
            np.asarray(layer.gap_lengths).astype(np.uint8).tobytes(),
            bytes(layer.payload),
        )
    )


def _context_body(name: str, layer: ContextCodedLayer) -> bytes:
    problem = context_layer_problem(layer)
    if problem:
        raise InvalidInputError(f"context-coded layer {name!r}: {problem}")
    return b"".join(
        (
            _shape_bytes(layer.shape),
            CONTEXT_PARAMS.pack(
                layer.r,
                FLAG_LIVENESS if layer.live is not None else 0,
                layer.width,
                layer.nnz,
                len(layer.stream),
            ),
            np.asarray(layer.codebook).astype("<f4").tobytes(),
            b"" if layer.live is None else layer.live.to_bytes(),
            bytes(layer.stream),
        )
    )


def _plain_body(name: str, value: torch.Tensor | np.ndarray) -> tuple[bytes, bytes]:
    """(dtype | ndim | dims, raw data) of a plain tensor; the data is its own chunk (no copy)."""
    if isinstance(value, np.ndarray):
        code = NUMPY_CODES.get((value.dtype.kind, value.dtype.itemsize))
        if code is None:
            raise InvalidInputError(f"plain tensor {name!r}: dtype {value.dtype} is not storable")
        array = value
    else:
        tensor = value.detach()
        code = TORCH_CODES.get(tensor.dtype)
        if code is None:
            raise InvalidInputError(f"plain tensor {name!r}: dtype {tensor.dtype} is not storable")
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            raise InvalidInputError(
                f"plain tensor {name!r} must be a dense tensor with data "
                f"(layout {tensor.layout}, device {tensor.device})"
            )
        tensor = tensor.cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        array = tensor.numpy()
    shape = tuple(int(d) for d in array.shape)
    problem = shape_problem(shape, min_ndim=0, min_dim=0)
    if problem:
        raise InvalidInputError(f"plain tensor {name!r}: {problem}")
    data = np.ascontiguousarray(array).astype(DTYPES[code][1], copy=False).tobytes()
    return struct.pack(f"<BB{len(shape)}Q", code, len(shape), *shape), data
