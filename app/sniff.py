"""Classify an upload from its first bytes, without parsing or unpickling anything.

The API never interprets a user's file (see docs/architecture.md): it only looks at magic
numbers so that obviously wrong uploads (a pickle, a text file) fail fast with a 415. Telling a
TorchScript archive from a ``.pt2`` or a ``torch.save`` zip is left to the worker, which must
open the file anyway.
"""

from __future__ import annotations

import struct
from typing import Literal

from app.errors import UnsupportedFileTypeError

HEAD_BYTES = 4096
ZIP_LOCAL_HEADER = b"PK\x03\x04"
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own cap

Kind = Literal["model", "dataset"]

MODEL_HINT = "upload TorchScript, a .pt2 ExportedProgram, a torch.save zip or safetensors"
DATASET_HINT = "upload an .npz or a safetensors file with x_train, y_train, x_val, y_val"


def _is_safetensors(head: bytes) -> bool:
    """8-byte little-endian header length, then a JSON object."""
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


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
    if _is_safetensors(head):
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
