"""Reading files (versions 1 to 6): every byte is validated before anything is handed out.

Checks run in the order of ``docs/format.md``, so a bad file raises the named ``FormatError`` the
spec gives for it, and never an ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from typing import Any

import numpy as np
import torch

from weightless_core.baselines.context_coded import FLAG_LIVENESS, ContextCodedLayer
from weightless_core.baselines.deep_compression import MAX_INDEX_BITS, DeepCompressedLayer
from weightless_core.errors import (
    BadMagicError,
    ChecksumMismatchError,
    FormatError,
    InvalidInputError,
    MalformedRecordError,
    TruncatedFileError,
    UnsupportedVersionError,
)
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
    FRAMING_BYTES,
    HASH_SPLITMIX64_V1,
    HEADER,
    HEADER_BYTES,
    KIND_CONTEXT_CODED,
    KIND_DEEP_COMPRESSION,
    KIND_ENCODED,
    KIND_ENCODED_LIVE,
    KIND_ENCODED_VETO,
    KIND_METADATA,
    KIND_NAMELEN,
    KIND_NAMES,
    KIND_PLAIN,
    MAGIC,
    MAX_METADATA_BYTES,
    MAX_NDIM,
    MAX_RECORDS,
    MIN_FILE_BYTES,
    MIN_VERSION_OF_KIND,
    MIN_VERSION_OF_STRUCTURE,
    SUPPORTED_VERSIONS,
    VETO_PARAMS,
    EncodedModel,
    Entry,
    PathLike,
)
from weightless_core.method.layer import MAX_R, EncodedLayer
from weightless_core.method.liveness import Liveness, matrix_shape
from weightless_core.retrieval import BY_CODE, RetrievalStructure


class _Reader:
    """Bounds-checked little-endian reads of ``buf[pos:end]``.

    Running past ``end`` raises ``error`` (TruncatedFileError for file framing,
    MalformedRecordError inside a record body), never IndexError or struct.error.
    """

    def __init__(
        self, buf: memoryview, pos: int, end: int, error: type[FormatError], where: str
    ) -> None:
        self.buf, self.pos, self.end, self.error, self.where = buf, pos, end, error, where

    def take(self, n: int, what: str) -> memoryview:
        if n > self.end - self.pos:
            raise self.error(
                f"{self.where}: {what} needs {n} bytes at offset {self.pos}, "
                f"only {self.end - self.pos} remain"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "little")

    def dims(self, ndim: int) -> tuple[int, ...]:
        raw = self.take(8 * ndim, f"{ndim} dims")
        return struct.unpack(f"<{ndim}Q", raw)

    def done(self) -> None:
        if self.pos != self.end:
            raise MalformedRecordError(
                f"{self.where}: {self.end - self.pos} bytes left over after its last field"
            )


def from_bytes(data: bytes | bytearray | memoryview) -> EncodedModel:
    """Parse and fully validate a file held in memory (checks in the order of docs/format.md)."""
    buf = memoryview(data).cast("B")
    size = len(buf)
    head = bytes(buf[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise BadMagicError(
            f"this is not a Weightless file: it starts with {head!r}, expected {MAGIC!r}"
        )
    if size < MIN_FILE_BYTES:
        raise TruncatedFileError(
            f"file is {size} bytes, shorter than the {MIN_FILE_BYTES} bytes of header and footer"
        )
    _, version, flags, count = HEADER.unpack_from(buf, 0)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"file format version {version} is not supported (this weightless reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade weightless to read it"
        )
    if flags != 0:
        raise UnsupportedVersionError(
            f"header flags {flags:#06x} are unknown to format version {version} (must be 0); "
            "the file was written by a newer weightless: upgrade to read it"
        )
    _check_footer(buf, count)
    return _parse_records(buf, count, version)


def _check_footer(buf: memoryview, count: int) -> None:
    size = len(buf)
    crc, end_magic = FOOTER.unpack_from(buf, size - FOOTER_BYTES)
    actual = zlib.crc32(buf[: size - FOOTER_BYTES])
    if end_magic == END_MAGIC and crc == actual:
        return
    # The footer is not where it should be: tell a cut file from trailing bytes from corruption.
    end = _walk_framing(buf, count, size - FOOTER_BYTES)
    if end is not None and end < size - FOOTER_BYTES:
        stored, magic = FOOTER.unpack_from(buf, end)
        if magic == END_MAGIC and stored == zlib.crc32(buf[:end]):
            raise MalformedRecordError(
                f"{size - end - FOOTER_BYTES} trailing bytes after the footer at offset {end}"
            )
    if end_magic == END_MAGIC:
        raise ChecksumMismatchError(
            f"file is corrupt: stored CRC-32 {crc:#010x} but the bytes give {actual:#010x}"
        )
    if end is None:
        raise TruncatedFileError(
            f"file ends early: its {count} records need more than the {size} bytes present"
        )
    raise ChecksumMismatchError(
        f"file is corrupt: footer end magic is {bytes(end_magic)!r}, expected {END_MAGIC!r}"
    )


def _walk_framing(buf: memoryview, count: int, limit: int) -> int | None:
    """Offset where ``count`` records starting at the header end, or None past ``limit``."""
    pos = HEADER_BYTES
    for _ in range(count):
        if limit - pos < FRAMING_BYTES:
            return None
        _, name_len = KIND_NAMELEN.unpack_from(buf, pos)
        pos += 3 + name_len
        if limit - pos < 8:
            return None
        (body_len,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + body_len
        if pos > limit:
            return None
    return pos


def _parse_records(buf: memoryview, count: int, version: int) -> EncodedModel:
    if count > MAX_RECORDS:
        raise MalformedRecordError(f"record_count {count} exceeds the cap of {MAX_RECORDS}")
    end = len(buf) - FOOTER_BYTES
    framing = _Reader(buf, HEADER_BYTES, end, TruncatedFileError, "file")
    entries: dict[str, Entry] = {}
    metadata: dict[str, Any] = {}
    for index in range(count):
        framing.where = f"record {index}"
        kind = framing.u8("kind")
        name_len = framing.u16("name_len")
        raw_name = framing.take(name_len, "name")
        body_len = framing.u64("body_len")
        body_start = framing.pos
        framing.take(body_len, "body")
        where = f"record {index}"
        if kind == KIND_METADATA:
            if index != 0:
                raise MalformedRecordError(f"{where}: metadata must be the first record")
            if name_len:
                raise MalformedRecordError(f"{where}: the metadata record must have no name")
            metadata = _parse_metadata(buf[body_start : body_start + body_len], where)
            continue
        if kind not in _PARSERS:
            raise MalformedRecordError(f"{where}: unknown record kind {kind}")
        if version < MIN_VERSION_OF_KIND[kind]:
            raise MalformedRecordError(
                f"{where}: record kind {kind} ({KIND_NAMES[kind]}) needs format version "
                f"{MIN_VERSION_OF_KIND[kind]}, but the file says version {version}"
            )
        name = _decode_name(raw_name, where)
        if name in entries:
            raise MalformedRecordError(f"{where}: duplicate name {name!r}")
        body = _Reader(buf, body_start, body_start + body_len, MalformedRecordError, name)
        body.where = f"{where} ({name!r})"
        if kind in (KIND_ENCODED, KIND_ENCODED_LIVE, KIND_ENCODED_VETO):
            entries[name] = _parse_encoded(body, version, kind)
        else:
            entries[name] = _PARSERS[kind](body)
        body.done()
    if framing.pos != end:
        raise MalformedRecordError(
            f"{end - framing.pos} bytes between the last record and the footer"
        )
    return EncodedModel(entries=entries, metadata=metadata)


def _decode_name(raw: memoryview, where: str) -> str:
    problem = name_problem(raw)
    if problem:
        raise MalformedRecordError(f"{where}: {problem}")
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as e:
        raise MalformedRecordError(f"{where}: name is not valid UTF-8 ({e})") from None


def _parse_metadata(raw: memoryview, where: str) -> dict[str, Any]:
    if len(raw) > MAX_METADATA_BYTES:
        raise MalformedRecordError(f"{where}: metadata exceeds {MAX_METADATA_BYTES} bytes")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate key in a JSON object")
        return out

    def no_constants(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    try:
        value = json.loads(
            str(raw, "utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedRecordError(f"{where}: metadata is not valid UTF-8 JSON: {e}") from None
    if not isinstance(value, dict):
        raise MalformedRecordError(f"{where}: metadata must be a JSON object")
    return value


def _parse_shape(body: _Reader, *, min_ndim: int, min_dim: int) -> tuple[int, ...]:
    """``ndim | dims`` of a record body, checked; ndim first, so a bad one reads no dims."""
    ndim = body.u8("ndim")
    if not min_ndim <= ndim <= MAX_NDIM:
        raise MalformedRecordError(
            f"{body.where}: ndim must be in {min_ndim}..{MAX_NDIM}, got {ndim}"
        )
    shape = body.dims(ndim)
    problem = shape_problem(shape, min_ndim=min_ndim, min_dim=min_dim)
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    return shape


def _parse_encoded(body: _Reader, version: int, kind: int = KIND_ENCODED) -> EncodedLayer:
    shape = _parse_shape(body, min_ndim=1, min_dim=1)
    code, r, t, hash_code, seed, num_cells, nnz, fp = ENCODED_PARAMS.unpack(
        body.take(ENCODED_PARAMS.size, "parameters")
    )
    if hash_code != HASH_SPLITMIX64_V1:
        raise MalformedRecordError(
            f"{body.where}: unknown hash code {hash_code} (this reader knows 1 = splitmix64-v1)"
        )
    if version < MIN_VERSION_OF_STRUCTURE.get(code, 1):
        raise MalformedRecordError(
            f"{body.where}: retrieval structure {code} ({BY_CODE[code].kind}) needs format "
            f"version {MIN_VERSION_OF_STRUCTURE[code]}, but the file says version {version}"
        )
    # Check r before reading 2**r floats, so a huge r cannot ask for a huge codebook.
    if not 1 <= r <= MAX_R:
        raise MalformedRecordError(f"{body.where}: r must be in 1..{MAX_R}, got {r}")
    codebook = np.frombuffer(body.take(4 << r, "codebook"), dtype="<f4").astype(np.float32)
    live = kind == KIND_ENCODED_LIVE
    veto_fields = None
    if kind == KIND_ENCODED_VETO:
        has_live, *veto_fields = VETO_PARAMS.unpack(body.take(VETO_PARAMS.size, "veto parameters"))
        if has_live not in (0, 1):
            raise MalformedRecordError(f"{body.where}: the liveness flag must be 0 or 1")
        problem = veto_problem(veto_fields[0], 1, veto_fields[1], veto_fields[2])
        if problem:
            raise MalformedRecordError(f"{body.where}: {problem}")
        if version < MIN_VERSION_OF_STRUCTURE.get(veto_fields[0], 1):
            raise MalformedRecordError(
                f"{body.where}: the veto's structure {veto_fields[0]} needs format version "
                f"{MIN_VERSION_OF_STRUCTURE[veto_fields[0]]}, but the file says {version}"
            )
        live = bool(has_live)
    liveness = _parse_liveness(body, shape) if live else None
    problem = layer_problem(
        numel=math.prod(shape) if liveness is None else liveness.grid_size,
        code=code,
        r=r,
        t=t,
        seed=seed,
        num_cells=num_cells,
        nnz=nnz,
        false_positives=fp,
        codebook=codebook,
    )
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    veto = None
    if veto_fields is not None:
        code_v, seed_v, cells_v = veto_fields
        veto = _table(body, BY_CODE[code_v], 1, seed_v, cells_v, (cells_v + 7) // 8, "veto")
    table_len = (num_cells * t + 7) // 8
    if table_len != body.end - body.pos:
        raise MalformedRecordError(
            f"{body.where}: a table of {num_cells} cells of {t} bits is {table_len} bytes, "
            f"but the body has {body.end - body.pos} bytes left for it"
        )
    structure = _table(body, BY_CODE[code], t, seed, num_cells, table_len, "table")
    return EncodedLayer(
        shape=shape,
        r=r,
        codebook=codebook,
        structure=structure,
        nnz=nnz,
        false_positives=fp,
        live=liveness,
        veto=veto,
    )


def _table(
    body: _Reader,
    cls: type[RetrievalStructure],
    t: int,
    seed: int,
    num_cells: int,
    nbytes: int,
    what: str,
) -> RetrievalStructure:
    """A packed table of ``num_cells`` ``t``-bit cells read from ``body``, its padding checked."""
    table = bytes(body.take(nbytes, what))
    used = (num_cells * t) % 8
    if used and table[-1] >> used:
        raise MalformedRecordError(f"{body.where}: padding bits after the last cell are not 0")
    try:
        return cls.from_table(t=t, seed=seed, num_cells=num_cells, table=table)
    except InvalidInputError as e:
        raise MalformedRecordError(f"{body.where}: {e}") from None


def _parse_liveness(body: _Reader, shape: tuple[int, ...]) -> Liveness:
    """The two bitmaps of a kind-5, -6 or -7 record, checked (docs/format.md, kind 5)."""
    rows, cols = matrix_shape(shape)
    raw = bytes(body.take((rows + 7) // 8 + (cols + 7) // 8, "liveness bitmaps"))
    try:
        live = Liveness.from_bytes(raw, shape)
    except InvalidInputError as e:
        raise MalformedRecordError(f"{body.where}: {e}") from None
    problem = live_problem(live, shape)
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    return live


def _parse_deep(body: _Reader) -> DeepCompressedLayer:
    shape = _parse_shape(body, min_ndim=1, min_dim=1)
    r, index_bits, nnz, entries, code_bits, gap_bits = DEEP_PARAMS.unpack(
        body.take(DEEP_PARAMS.size, "parameters")
    )
    # Check the sizes of what follows before reading it, so a bad byte cannot ask for much.
    if not 1 <= r <= MAX_R:
        raise MalformedRecordError(f"{body.where}: r must be in 1..{MAX_R}, got {r}")
    if not 1 <= index_bits <= MAX_INDEX_BITS:
        raise MalformedRecordError(
            f"{body.where}: index_bits must be in 1..{MAX_INDEX_BITS}, got {index_bits}"
        )
    codebook = np.frombuffer(body.take(4 << r, "codebook"), dtype="<f4").astype(np.float32)
    code_lengths = np.frombuffer(body.take((1 << r) + 1, "code lengths"), dtype=np.uint8)
    gap_lengths = np.frombuffer(body.take(1 << index_bits, "gap lengths"), dtype=np.uint8)
    need = (code_bits + 7) // 8 + (gap_bits + 7) // 8
    if need != body.end - body.pos:
        raise MalformedRecordError(
            f"{body.where}: streams of {code_bits} and {gap_bits} bits are {need} bytes, "
            f"but the body has {body.end - body.pos} bytes left for them"
        )
    layer = DeepCompressedLayer(
        shape=shape,
        r=r,
        index_bits=index_bits,
        codebook=codebook,
        nnz=nnz,
        entries=entries,
        code_lengths=code_lengths.copy(),
        gap_lengths=gap_lengths.copy(),
        code_bits=code_bits,
        gap_bits=gap_bits,
        payload=bytes(body.take(need, "streams")),
    )
    problem = deep_layer_problem(layer)  # decodes both streams
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    return layer


def _parse_context(body: _Reader) -> ContextCodedLayer:
    shape = _parse_shape(body, min_ndim=1, min_dim=1)
    r, flags, width, nnz, stream_len = CONTEXT_PARAMS.unpack(
        body.take(CONTEXT_PARAMS.size, "parameters")
    )
    if not 1 <= r <= MAX_R:
        raise MalformedRecordError(f"{body.where}: r must be in 1..{MAX_R}, got {r}")
    if flags & ~FLAG_LIVENESS:
        raise MalformedRecordError(f"{body.where}: unknown flags {flags:#04x} (only bit 0 is used)")
    codebook = np.frombuffer(body.take(4 << r, "codebook"), dtype="<f4").astype(np.float32)
    live = _parse_liveness(body, shape) if flags & FLAG_LIVENESS else None
    if stream_len != body.end - body.pos:
        raise MalformedRecordError(
            f"{body.where}: the stream is {stream_len} bytes, but the body has "
            f"{body.end - body.pos} bytes left for it"
        )
    layer = ContextCodedLayer(
        shape=shape,
        r=r,
        codebook=codebook,
        nnz=nnz,
        live=live,
        width=width,
        stream=bytes(body.take(stream_len, "stream")),
    )
    problem = context_layer_problem(layer)  # decodes the stream
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    return layer


def _parse_plain(body: _Reader) -> torch.Tensor:
    code = body.u8("dtype")
    if code not in DTYPES:
        raise MalformedRecordError(
            f"{body.where}: unknown dtype code {code} (this reader knows 1..{len(DTYPES)})"
        )
    shape = _parse_shape(body, min_ndim=0, min_dim=0)
    dtype, storage = DTYPES[code]
    need = math.prod(shape) * np.dtype(storage).itemsize
    if need != body.end - body.pos:
        raise MalformedRecordError(
            f"{body.where}: {dtype} data of shape {shape} is {need} bytes, "
            f"but the body has {body.end - body.pos} bytes left for it"
        )
    raw = np.frombuffer(body.take(need, "data"), dtype=storage)
    if dtype == torch.bool:
        if raw.size and raw.max() > 1:
            raise MalformedRecordError(f"{body.where}: a bool byte is not 0 or 1")
        return torch.from_numpy(raw.astype(np.bool_).reshape(shape))
    array = raw.astype(raw.dtype.newbyteorder("="))  # a writable, native-order copy
    tensor = torch.from_numpy(array.reshape(shape))
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


_PARSERS = {  # kinds 1, 5, 6 are parsed by _parse_encoded, which also needs the file's version
    KIND_ENCODED: _parse_encoded,
    KIND_ENCODED_LIVE: _parse_encoded,
    KIND_ENCODED_VETO: _parse_encoded,
    KIND_PLAIN: _parse_plain,
    KIND_DEEP_COMPRESSION: _parse_deep,
    KIND_CONTEXT_CODED: _parse_context,
}


def read_model(path: PathLike) -> EncodedModel:
    """Read and validate a whole file; a bad file raises a ``FormatError`` naming the path."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return from_bytes(data)
    except FormatError as e:
        raise type(e)(f"{os.fspath(path)}: {e}") from None
