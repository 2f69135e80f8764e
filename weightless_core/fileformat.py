"""The encoded-model file format, version 1 (``docs/format.md`` is normative).

A file is a header, one record per tensor (encoded layer, plain tensor, or JSON metadata) and a
CRC-32 footer. Writing is deterministic and atomic; reading validates every byte before handing
anything out, so a bad file raises a named ``FormatError`` and never an ``IndexError``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from weightless_core.errors import (
    BadMagicError,
    ChecksumMismatchError,
    FormatError,
    InvalidInputError,
    MalformedRecordError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from weightless_core.layer import MAX_R, EncodedLayer
from weightless_core.retrieval import BY_CODE, MAX_T

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
_U64 = (1 << 64) - 1

_HEADER = struct.Struct("<8sHHI")
_FOOTER = struct.Struct("<I4s")
_KIND_NAMELEN = struct.Struct("<BH")
_ENCODED_PARAMS = struct.Struct("<BBBBQQQQ")  # structure r t hash seed num_cells nnz fp

# dtype code -> (torch dtype, little-endian storage dtype). bfloat16 is stored as its int16 bit
# pattern (numpy has no bfloat16) and bool as one byte that must be 0 or 1.
_DTYPES: dict[int, tuple[torch.dtype, str]] = {
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
_TORCH_CODES = {dt: code for code, (dt, _) in _DTYPES.items()}
_NUMPY_CODES = {  # (kind, itemsize) so byte order does not matter on input
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
    return FRAMING_BYTES + len(_metadata_body(metadata)) if metadata else 0


# ----------------------------------------------------------------------------- writing


def to_bytes(
    entries: Mapping[str, EncodedLayer | torch.Tensor | np.ndarray],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """The file for ``entries`` (file order = mapping order) as bytes; see ``save``."""
    chunks: list[bytes] = []
    _write(chunks.append, entries, metadata)
    return b"".join(chunks)


def save(
    path: PathLike,
    entries: Mapping[str, EncodedLayer | torch.Tensor | np.ndarray],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Write the file atomically and return its size in bytes.

    Records stream into a temporary file next to ``path`` that is renamed over it only once
    complete, so a failure (bad entry, full disk, Ctrl-C) leaves ``path`` as it was and no
    temporary file behind. Equal inputs always give identical bytes.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    base = os.path.basename(target)[:100]
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            size = _write(f.write, entries, metadata)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


def _write(
    sink: Callable[[bytes], object],
    entries: Mapping[str, EncodedLayer | torch.Tensor | np.ndarray],
    metadata: Mapping[str, Any] | None,
) -> int:
    """Stream the file into ``sink`` chunk by chunk; returns the bytes written."""
    crc = 0
    size = 0
    for chunk in _file_chunks(entries, metadata):
        sink(chunk)
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    sink(_FOOTER.pack(crc, END_MAGIC))
    return size + FOOTER_BYTES


def _file_chunks(
    entries: Mapping[str, EncodedLayer | torch.Tensor | np.ndarray],
    metadata: Mapping[str, Any] | None,
) -> Iterator[bytes]:
    if not isinstance(entries, Mapping):
        raise InvalidInputError(f"entries must be a mapping name -> tensor, got {type(entries)}")
    meta = _metadata_body(metadata) if metadata else None
    count = len(entries) + (meta is not None)
    if count > MAX_RECORDS:
        raise InvalidInputError(f"at most {MAX_RECORDS} records per file, got {count}")
    yield _HEADER.pack(MAGIC, FORMAT_VERSION, 0, count)
    if meta is not None:
        yield _framing(KIND_METADATA, b"", len(meta))
        yield meta
    for name, value in entries.items():
        encoded_name = _encode_name(name)
        if isinstance(value, EncodedLayer):
            body = _encoded_body(name, value)
            yield _framing(KIND_ENCODED, encoded_name, len(body))
            yield body
        elif isinstance(value, torch.Tensor | np.ndarray):
            head, data = _plain_body(name, value)
            yield _framing(KIND_PLAIN, encoded_name, len(head) + len(data))
            yield head
            yield data
        else:
            raise InvalidInputError(
                f"entry {name!r} must be an EncodedLayer, torch.Tensor or numpy array, "
                f"got {type(value).__name__}"
            )


def _framing(kind: int, name: bytes, body_len: int) -> bytes:
    return _KIND_NAMELEN.pack(kind, len(name)) + name + struct.pack("<Q", body_len)


def _encode_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise InvalidInputError(f"entry names must be str, got {type(name).__name__} {name!r}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(f"entry name {name!r} is not encodable as UTF-8") from e
    problem = _name_problem(raw)
    if problem:
        raise InvalidInputError(f"entry name {name[:80]!r}: {problem}")
    return raw


def _name_problem(raw: bytes | memoryview) -> str | None:
    if not raw:
        return "names must not be empty"
    if len(raw) > MAX_NAME_BYTES:
        return f"name is {len(raw)} bytes long, at most {MAX_NAME_BYTES} are allowed"
    if 0 in bytes(raw):
        return "names must not contain a NUL character"
    return None


def _metadata_body(metadata: Mapping[str, Any]) -> bytes:
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


def _encoded_body(name: str, layer: EncodedLayer) -> bytes:
    s = layer.structure
    codebook = np.asarray(layer.codebook)
    problem = _shape_problem(layer.shape, min_ndim=1, min_dim=1) or _layer_problem(
        numel=math.prod(layer.shape),
        code=s.code,
        r=layer.r,
        t=s.t,
        seed=s.seed,
        num_cells=s.num_cells,
        nnz=layer.nnz,
        false_positives=layer.false_positives,
        codebook=codebook,
    )
    if problem:
        raise InvalidInputError(f"encoded layer {name!r}: {problem}")
    table = s.table_bytes()
    return b"".join(
        (
            struct.pack(f"<B{len(layer.shape)}Q", len(layer.shape), *layer.shape),
            _ENCODED_PARAMS.pack(
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
            table,
        )
    )


def _plain_body(name: str, value: torch.Tensor | np.ndarray) -> tuple[bytes, bytes]:
    """(dtype | ndim | dims, raw data) of a plain tensor; the data is its own chunk (no copy)."""
    if isinstance(value, np.ndarray):
        code = _NUMPY_CODES.get((value.dtype.kind, value.dtype.itemsize))
        if code is None:
            raise InvalidInputError(f"plain tensor {name!r}: dtype {value.dtype} is not storable")
        array = value
    else:
        tensor = value.detach()
        code = _TORCH_CODES.get(tensor.dtype)
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
    problem = _shape_problem(shape, min_ndim=0, min_dim=0)
    if problem:
        raise InvalidInputError(f"plain tensor {name!r}: {problem}")
    data = np.ascontiguousarray(array).astype(_DTYPES[code][1], copy=False).tobytes()
    return struct.pack(f"<BB{len(shape)}Q", code, len(shape), *shape), data


# ----------------------------------------------------------------------------- validation
# Shared by the writer (-> InvalidInputError) and the reader (-> MalformedRecordError), so the
# library never writes a file it would refuse to read.


def _shape_problem(shape: tuple[int, ...], *, min_ndim: int, min_dim: int) -> str | None:
    if not min_ndim <= len(shape) <= MAX_NDIM:
        return f"ndim must be in {min_ndim}..{MAX_NDIM}, got {len(shape)}"
    if any(d < min_dim for d in shape):
        return f"every dimension must be >= {min_dim}, got shape {shape}"
    if math.prod(shape) > MAX_NUMEL:
        return f"shape {shape} has more than 2**40 elements"
    return None


def _layer_problem(
    *,
    numel: int,
    code: int,
    r: int,
    t: int,
    seed: int,
    num_cells: int,
    nnz: int,
    false_positives: int,
    codebook: np.ndarray,
) -> str | None:
    if code not in BY_CODE:
        known = ", ".join(f"{c} = {s.kind}" for c, s in sorted(BY_CODE.items()))
        return (
            f"unknown retrieval structure code {code} (this reader knows {known}); "
            "the file may need a newer weightless"
        )
    if not 1 <= r <= MAX_R:
        return f"r must be in 1..{MAX_R}, got {r}"
    if not r < t <= MAX_T:
        return f"t must satisfy r < t <= {MAX_T}, got r={r}, t={t}"
    if not 0 <= seed <= _U64:
        return f"seed must be a u64, got {seed}"
    if not 0 <= num_cells <= MAX_NUM_CELLS:
        return f"num_cells must be <= {MAX_NUM_CELLS}, got {num_cells}"
    if not 0 <= nnz <= numel:
        return f"nnz = {nnz} is not in 0..numel = {numel}"
    if not 0 <= false_positives <= numel - nnz:
        return f"false_positives = {false_positives} exceeds the {numel - nnz} pruned positions"
    if codebook.shape != (1 << r,):
        return f"codebook must have shape ({1 << r},) for r={r}, got {codebook.shape}"
    if not np.all(np.isfinite(codebook)):
        return "codebook holds NaN or Inf"
    return None


# ----------------------------------------------------------------------------- reading


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
    _, version, flags, count = _HEADER.unpack_from(buf, 0)
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
    return _parse_records(buf, count)


def _check_footer(buf: memoryview, count: int) -> None:
    size = len(buf)
    crc, end_magic = _FOOTER.unpack_from(buf, size - FOOTER_BYTES)
    actual = zlib.crc32(buf[: size - FOOTER_BYTES])
    if end_magic == END_MAGIC and crc == actual:
        return
    # The footer is not where it should be: tell a cut file from trailing bytes from corruption.
    end = _walk_framing(buf, count, size - FOOTER_BYTES)
    if end is not None and end < size - FOOTER_BYTES:
        stored, magic = _FOOTER.unpack_from(buf, end)
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
        _, name_len = _KIND_NAMELEN.unpack_from(buf, pos)
        pos += 3 + name_len
        if limit - pos < 8:
            return None
        (body_len,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + body_len
        if pos > limit:
            return None
    return pos


def _parse_records(buf: memoryview, count: int) -> EncodedModel:
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
        if kind not in (KIND_ENCODED, KIND_PLAIN):
            raise MalformedRecordError(f"{where}: unknown record kind {kind}")
        name = _decode_name(raw_name, where)
        if name in entries:
            raise MalformedRecordError(f"{where}: duplicate name {name!r}")
        body = _Reader(buf, body_start, body_start + body_len, MalformedRecordError, name)
        body.where = f"{where} ({name!r})"
        entries[name] = _parse_encoded(body) if kind == KIND_ENCODED else _parse_plain(body)
        body.done()
    if framing.pos != end:
        raise MalformedRecordError(
            f"{end - framing.pos} bytes between the last record and the footer"
        )
    return EncodedModel(entries=entries, metadata=metadata)


def _decode_name(raw: memoryview, where: str) -> str:
    problem = _name_problem(raw)
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


def _parse_encoded(body: _Reader) -> EncodedLayer:
    ndim = body.u8("ndim")
    if not 1 <= ndim <= MAX_NDIM:
        raise MalformedRecordError(f"{body.where}: ndim must be in 1..{MAX_NDIM}, got {ndim}")
    shape = body.dims(ndim)
    problem = _shape_problem(shape, min_ndim=1, min_dim=1)
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    code, r, t, hash_code, seed, num_cells, nnz, fp = _ENCODED_PARAMS.unpack(
        body.take(_ENCODED_PARAMS.size, "parameters")
    )
    if hash_code != HASH_SPLITMIX64_V1:
        raise MalformedRecordError(
            f"{body.where}: unknown hash code {hash_code} (this reader knows 1 = splitmix64-v1)"
        )
    # Check r before reading 2**r floats, so a huge r cannot ask for a huge codebook.
    if not 1 <= r <= MAX_R:
        raise MalformedRecordError(f"{body.where}: r must be in 1..{MAX_R}, got {r}")
    codebook = np.frombuffer(body.take(4 << r, "codebook"), dtype="<f4").astype(np.float32)
    problem = _layer_problem(
        numel=math.prod(shape),
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
    table_len = (num_cells * t + 7) // 8
    if table_len != body.end - body.pos:
        raise MalformedRecordError(
            f"{body.where}: a table of {num_cells} cells of {t} bits is {table_len} bytes, "
            f"but the body has {body.end - body.pos} bytes left for it"
        )
    table = bytes(body.take(table_len, "table"))
    used = (num_cells * t) % 8
    if used and table[-1] >> used:
        raise MalformedRecordError(f"{body.where}: padding bits after the last cell are not 0")
    try:
        structure = BY_CODE[code].from_table(t=t, seed=seed, num_cells=num_cells, table=table)
    except InvalidInputError as e:
        raise MalformedRecordError(f"{body.where}: {e}") from None
    return EncodedLayer(
        shape=shape, r=r, codebook=codebook, structure=structure, nnz=nnz, false_positives=fp
    )


def _parse_plain(body: _Reader) -> torch.Tensor:
    code = body.u8("dtype")
    if code not in _DTYPES:
        raise MalformedRecordError(
            f"{body.where}: unknown dtype code {code} (this reader knows 1..{len(_DTYPES)})"
        )
    ndim = body.u8("ndim")
    if ndim > MAX_NDIM:
        raise MalformedRecordError(f"{body.where}: ndim must be in 0..{MAX_NDIM}, got {ndim}")
    shape = body.dims(ndim)
    problem = _shape_problem(shape, min_ndim=0, min_dim=0)
    if problem:
        raise MalformedRecordError(f"{body.where}: {problem}")
    dtype, storage = _DTYPES[code]
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


def read_model(path: PathLike) -> EncodedModel:
    """Read and validate a whole file; a bad file raises a ``FormatError`` naming the path."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return from_bytes(data)
    except FormatError as e:
        raise type(e)(f"{os.fspath(path)}: {e}") from None


# ----------------------------------------------------------------------------- loading


def load(path: PathLike, *, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The dense ``state_dict`` in file order: encoded layers decoded to float32."""
    model = read_model(path)
    out: dict[str, torch.Tensor] = {}
    for name, value in model.entries.items():
        tensor = torch.from_numpy(value.decode()) if isinstance(value, EncodedLayer) else value
        out[name] = tensor.to(device)
    return out


def load_into(module: torch.nn.Module, path: PathLike, *, strict: bool = True) -> None:
    """Copy the file's tensors into ``module``; mismatches raise ``InvalidInputError``.

    Checked up front so the message names every offending key and shape instead of torch's
    ``RuntimeError`` (and so nothing is copied when the file does not fit).
    """
    state = load(path)
    own = module.state_dict()
    problems: list[str] = []
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing:
            problems.append(f"missing from the file: {', '.join(missing)}")
        if unexpected:
            problems.append(f"not in the module: {', '.join(unexpected)}")
    mismatched = [
        f"{k} (file {tuple(v.shape)}, module {tuple(own[k].shape)})"
        for k, v in state.items()
        if isinstance(own.get(k), torch.Tensor) and tuple(own[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        problems.append(f"shape mismatch: {', '.join(mismatched)}")
    if problems:
        raise InvalidInputError(
            f"{os.fspath(path)} does not fit {type(module).__name__}: " + "; ".join(problems)
        )
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise InvalidInputError(f"cannot load {os.fspath(path)}: {e}") from e
