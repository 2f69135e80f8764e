"""Classify an upload from its first bytes, and check its framing, without unpickling anything.

The API never loads a user's file: it looks at magic numbers so that obviously wrong uploads (a
pickle, a text file) fail fast with a 415, and at the few structures that say how long a file
must be, so that truncated and damaged uploads are refused (422) and zip bombs too (413), before
a job is ever queued for them:

* a safetensors header (JSON, up to ``CHECKED_HEADER_BYTES``) is parsed and checked: shapes,
  dtypes and offsets must agree, and the upload must be as long as the header says;
* a zip archive must end with its directory (a cut-off upload does not), and when the
  directory is in the last ``TAIL_BYTES``, what its members claim to unpack to is bounded.

Telling a TorchScript archive from a ``.pt2`` or a ``torch.save`` zip is left to the worker,
which must open the file anyway and checks all of the above again.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable, Iterator
from typing import Literal

from app.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedFileTypeError
from weightless_core.errors import ModelLoadError
from weightless_core.io.model_files import (
    check_unpacked_size,
    parse_safetensors_header,
    safetensors_header_length,
)

HEAD_BYTES = 4096
ZIP_LOCAL_HEADER = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"  # end of central directory record: 22 bytes plus a comment
ZIP_END_MAX = 22 + 0xFFFF
CHECKED_HEADER_BYTES = 4 << 20  # larger safetensors headers are left to the worker
TAIL_BYTES = 1 << 20

Kind = Literal["model", "dataset"]

MODEL_HINT = "upload TorchScript, a .pt2 ExportedProgram, a torch.save zip or safetensors"
DATASET_HINT = "upload an .npz or a safetensors file with x_train, y_train, x_val, y_val"


def _first_zip_member(head: bytes) -> str | None:
    """Name of the first entry of a zip's local header, when it fits in ``head``."""
    if len(head) < 30 or not head.startswith(ZIP_LOCAL_HEADER):
        return None
    (name_len,) = struct.unpack("<H", head[26:28])
    return head[30 : 30 + name_len].decode("utf-8", errors="replace")


def _describe(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "a Python pickle, which the service never loads"
    if head.startswith(b"\x93NUMPY"):
        return "a bare .npy array"
    return "not a recognised format"


def sniff(head: bytes, kind: Kind) -> str:
    """The format of an upload whose first bytes are ``head`` (up to ``HEAD_BYTES``).

    Returns ``"safetensors"``, ``"zip-archive"`` (models) or ``"npz"`` (datasets); raises
    ``UnsupportedFileTypeError`` (415) for anything else.
    """
    hint = MODEL_HINT if kind == "model" else DATASET_HINT
    if not head:
        raise UnsupportedFileTypeError(f"unsupported file type: the file is empty; {hint}")
    if safetensors_header_length(head) is not None:
        return "safetensors"
    member = _first_zip_member(head)
    if member is not None:
        if kind == "model":
            return "zip-archive"
        if member.endswith(".npy"):
            return "npz"
        reason = "a zip archive whose entries are not .npy arrays"
    else:
        reason = _describe(head)
    raise UnsupportedFileTypeError(f"unsupported file type: {reason}; {hint}")


def safetensors_size(read_head: Callable[[int], bytes], name: str) -> int | None:
    """The exact size a safetensors upload must have, from its header (``None``: not checked).

    ``read_head(n)`` gives the upload's first ``n`` bytes. Raises ``InvalidRequestError`` (422)
    for a header that is cut off or inconsistent, e.g. a shape of 10**12 elements whose offsets
    span a few bytes; nothing is allocated for what a header claims.
    """
    length = safetensors_header_length(read_head(9))
    if length is None or length > CHECKED_HEADER_BYTES:
        return None
    head = read_head(8 + length)
    if len(head) < 8 + length:
        raise InvalidRequestError.field(
            "file", f"{name}: the safetensors file is truncated: it ends inside its header"
        )
    try:
        return parse_safetensors_header(head[8:], name).file_bytes
    except ModelLoadError as e:
        raise InvalidRequestError.field("file", str(e)) from None


def check_stored(
    fmt: str, *, size: int, expected: int | None, tail: bytes, name: str, max_unpacked: int
) -> None:
    """Refuse a stored upload whose framing says it is incomplete, damaged, or a zip bomb.

    ``tail`` is the upload's last bytes (``Tail``). Raises ``InvalidRequestError`` (422) or
    ``PayloadTooLargeError`` (413); the caller deletes the object.
    """
    # Bytes after the described data are left to the worker (it refuses them by name): the
    # API has long accepted padded files, e.g. in tests of the size limit.
    if fmt == "safetensors" and expected is not None and size < expected:
        raise InvalidRequestError.field(
            "file",
            f"{name}: the safetensors file is truncated: its header describes {expected} "
            f"bytes but the upload has {size}",
        )
    if fmt in ("zip-archive", "npz"):
        _check_zip_end(tail, size, name, max_unpacked)


def _check_zip_end(tail: bytes, size: int, name: str, max_unpacked: int) -> None:
    window = tail[-ZIP_END_MAX:]
    at = window.rfind(ZIP_END)
    while at >= 0:
        comment = window[at + 20 : at + 22]
        if len(comment) == 2 and at + 22 + struct.unpack("<H", comment)[0] == len(window):
            break
        at = window.rfind(ZIP_END, 0, at)
    if at < 0:
        raise InvalidRequestError.field(
            "file",
            f"{name}: the zip archive is truncated or damaged: it does not end with its "
            "directory; upload the complete file",
        )
    try:
        with zipfile.ZipFile(_TailFile(tail, size)) as archive:  # reads the directory only
            infos = archive.infolist()
    except _BeforeTail:
        return  # the directory starts before the tail: the worker checks the whole file
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InvalidRequestError.field(
            "file", f"{name}: the zip archive is damaged: its directory is unreadable ({e})"
        ) from None
    try:
        check_unpacked_size(infos, name, max_unpacked)
    except ModelLoadError as e:
        raise PayloadTooLargeError(str(e)) from None


class Tail:
    """Keeps the last ``keep`` bytes of a stream passed through ``follow``."""

    def __init__(self, keep: int = TAIL_BYTES) -> None:
        self.keep = keep
        self._data = bytearray()

    def follow(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._data += chunk
            if len(self._data) > 2 * self.keep:
                del self._data[: -self.keep]
            yield chunk

    def bytes(self) -> bytes:
        return bytes(self._data[-self.keep :])


class _BeforeTail(Exception):
    """A read of the stored upload reached before the bytes kept in memory."""


class _TailFile:
    """The last bytes of a ``size``-byte file as a read-only file, for ``zipfile`` to parse."""

    def __init__(self, tail: bytes, size: int) -> None:
        self._tail, self._start, self._size, self._pos = tail, size - len(tail), size, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if self._pos < self._start:
            raise _BeforeTail
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        data = self._tail[self._pos - self._start : end - self._start]
        self._pos += len(data)
        return data
