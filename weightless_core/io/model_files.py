"""What every model-file reader shares: PyTorch's zip layout, size checks, and refusals' wording.

Format detection (``detect_format``, here) and ``.pt2`` vetting (``pt2_vetting``) both split
archives with ``split_members`` and explain failures with ``reason``, so their messages read
alike. Zip sizes
(``check_unpacked_size``, ``read_member``) and safetensors headers
(``parse_safetensors_header``) are checked here before anything is inflated or allocated; this
module imports no torch, so the API and the service's CLI check uploads with the same code.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from weightless_core.errors import ModelLoadError, WeightlessError

SUPPORTED = (
    "supported formats are TorchScript (torch.jit.save), torch.export programs "
    "(torch.export.save, .pt2), a torch.save'd state_dict of plain tensors, and safetensors"
)
_MAX_REASON_CHARS = 400
DEFAULT_MAX_BYTES = 2 * 1024**3
FORMATS: tuple[str, ...] = ("torchscript", "exported-program", "state-dict", "safetensors")
WEIGHTS_ONLY: tuple[str, ...] = ("state-dict", "safetensors")  # no code: compressed data-free


def split_members(names: list[str], name: str) -> tuple[str, set[str]]:
    """The archive's top-level folder and its members relative to it (torch's zip layout)."""
    if not names:
        raise ModelLoadError(f"not a model file we can load safely: {name} is an empty zip")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{name}: zip archive has duplicate member names; refusing it")
    prefix = names[0].split("/", 1)[0]
    if "/" not in names[0] or not prefix or any(not n.startswith(prefix + "/") for n in names):
        raise ModelLoadError(
            f"not a model file we can load safely: {name} is a zip archive but not one written "
            f"by PyTorch (members are not under one folder); {SUPPORTED}"
        )
    return prefix, {n[len(prefix) + 1 :] for n in names}


def reason(exc: BaseException) -> str:
    """One line saying why a loader failed (torch's messages run to paragraphs)."""
    text = str(exc).strip() or type(exc).__name__
    if text.startswith("Weights only load failed"):
        # torch's first paragraph advises weights_only=False, which is exactly what we refuse.
        details = [
            p.strip().removeprefix("WeightsUnpickler error:").strip()
            for p in re.split(r"\n\s*\n", text)[1:]
            if p.strip() and not p.strip().startswith(("Check the documentation", "("))
        ]
        line = details[0].splitlines()[0] if details else "unsupported content"
        line = f"the pickle holds more than plain tensors, refused unrun ({line})"
    else:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    if len(line) > _MAX_REASON_CHARS:
        line = line[: _MAX_REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {line}"


# --------------------------------------------------------------------------------------------
# Zip archives: sizes are checked from the directory before any member is inflated


def check_unpacked_size(
    infos: Iterable[zipfile.ZipInfo], name: str, max_bytes: int,
    error: type[WeightlessError] = ModelLoadError,
) -> None:  # fmt: skip
    """Refuse an archive whose members claim more than ``max_bytes`` in all.

    A few megabytes of deflated zeros can claim gigabytes (a zip bomb), and torch's reader
    allocates what a member claims; the bound is the service's limit on an uncompressed file.
    """
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise error(
            f"{name}: the zip archive unpacks to {total} bytes, more than the limit of "
            f"{max_bytes} bytes; refused without unpacking it"
        )


def read_member(
    archive: zipfile.ZipFile, member: str, limit: int,
    error: type[WeightlessError] = ModelLoadError,
) -> bytes:  # fmt: skip
    """A member's bytes, inflating no more than its declared size (at most ``limit``).

    ``ZipFile.read`` inflates up to 2 GiB in one step before cutting a member to its declared
    size, so a member that lies about its size would still fill memory; bounded reads stop at
    the declared size (and the CRC check then fails for a liar).
    """
    info = archive.getinfo(member)
    if info.file_size > limit:
        raise error(f"{member}: {info.file_size} bytes is more than the limit of {limit}")
    with archive.open(info) as handle:
        return handle.read(info.file_size)


# --------------------------------------------------------------------------------------------
# safetensors headers, checked without torch (the API checks uploads with this too)

SAFETENSORS_MAX_HEADER = 100 << 20  # the safetensors library's own cap
_MAX_DIMS = 64  # bounds the size products below (a 10**5-dimension shape is a CPU sink)
_SAFETENSORS_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
    "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}  # fmt: skip


@dataclass(frozen=True)
class SafetensorsLayout:
    """What a safetensors header promises: its tensors and the exact size of the file."""

    header_bytes: int
    data_bytes: int
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)

    @property
    def file_bytes(self) -> int:
        return 8 + self.header_bytes + self.data_bytes


def safetensors_header_length(head: bytes) -> int | None:
    """The header length a file starting with ``head`` declares, if it looks like safetensors.

    An 8-byte little-endian length ``2 <= N <= 100 MiB``, then ``{``: what the safetensors
    library accepts, so anything else is not safetensors at all.
    """
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (length,) = struct.unpack("<Q", head[:8])
    return length if 2 <= length <= SAFETENSORS_MAX_HEADER else None


def parse_safetensors_header(header: bytes, name: str) -> SafetensorsLayout:
    """Check a safetensors header (the JSON after the length) the way the library does.

    Every tensor's shape and dtype must need exactly the bytes its ``data_offsets`` span, and
    the spans must tile the data area from 0 without gaps or overlaps. So a header cannot make
    a reader allocate more than the file holds: a claim of 10**12 elements either spans
    terabytes (and the file is not that long) or contradicts its offsets; both are refused
    here, before a byte of tensor data is read.
    """

    def bad(why: str) -> ModelLoadError:
        return ModelLoadError(f"{name}: cannot load safetensors: damaged header: {why}")

    try:
        doc = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int, str]] = []
    for key, entry in doc.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise bad("__metadata__ must map strings to strings")
            continue
        label = repr(key[:80])
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {label} needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _SAFETENSORS_BITS:
            raise bad(f"tensor {label} has unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(_natural(d) for d in shape):
            raise bad(f"tensor {label} has a shape that is not a list of sizes >= 0")
        if len(shape) > _MAX_DIMS or any(d >= 1 << 64 for d in shape):
            raise bad(f"tensor {label} has more than {_MAX_DIMS} dimensions or one past 2**64")
        if (
            not isinstance(offsets, list) or len(offsets) != 2
            or not all(_natural(o) for o in offsets) or offsets[0] > offsets[1]
        ):  # fmt: skip
            raise bad(f"tensor {label} has data_offsets that are not [begin, end]")
        bits = math.prod(shape) * _SAFETENSORS_BITS[dtype]
        span = offsets[1] - offsets[0]
        if bits % 8 or bits // 8 != span:
            raise bad(
                f"tensor {label} of shape {tuple(shape)} and dtype {dtype} needs "
                f"{bits // 8 if bits % 8 == 0 else bits / 8} bytes, but its data_offsets "
                f"span {span}"
            )
        tensors[key] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], label))
    end = 0
    for begin, stop, label in sorted(spans):
        if begin != end:
            raise bad(f"tensor {label} starts at byte {begin}, not at {end} (gap or overlap)")
        end = stop
    return SafetensorsLayout(header_bytes=len(header), data_bytes=end, tensors=tensors)


def _natural(value: object) -> bool:
    return type(value) is int and value >= 0


# --------------------------------------------------------------------------------------------
# Detection


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``, or a ``ModelLoadError`` naming it when it is not a file."""
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"{file}: no such file")
    return file


def detect_format(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The format of the model file at ``path`` (one of ``FORMATS``), judged by its bytes.

    safetensors: an 8-byte little-endian header length ``2 <= N <= 100 MiB``, then ``{``; the
    header must be sound and describe exactly the file's size (so a truncated or lying file is
    refused here, by name, before any tensor is read). Zip archives (everything
    ``torch.jit.save``, ``torch.export.save`` and ``torch.save`` write) must unpack to at most
    ``max_bytes`` and keep all members under one top-level folder ``<p>/`` with no duplicate
    names; then ``<p>/archive_format`` -> exported-program, ``<p>/constants.pkl`` plus
    ``<p>/code/...`` -> torchscript, ``<p>/data.pkl`` -> state-dict. Anything else, including
    legacy (non-zip) pickles, is a ``ModelLoadError``.
    """
    file = existing_file(path)
    size = file.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{file.name}: the file is empty")
    with file.open("rb") as handle:
        head = handle.read(9)
        header_len = safetensors_header_length(head)
        if header_len is not None:
            _check_safetensors(handle, header_len, size, file.name)
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ModelLoadError(
                f"{file.name}: damaged or truncated zip archive: {reason(exc)}"
            ) from exc
        check_unpacked_size(infos, file.name, max_bytes)
        return _classify_zip([info.filename for info in infos], file.name)
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}"):
        what = "a legacy (non-zip) pickle, which could run arbitrary code when loaded"
    else:
        what = "unrecognised content"
    raise ModelLoadError(f"not a model file we can load safely: {file.name} is {what}; {SUPPORTED}")


def _check_safetensors(handle: io.BufferedReader, header_len: int, size: int, name: str) -> None:
    """The header (after its 8-byte length) is sound and accounts for every byte of the file."""
    if size < 8 + header_len:
        raise ModelLoadError(
            f"{name}: cannot load safetensors: the file is truncated: it ends inside its "
            f"{header_len}-byte header ({size} bytes in all)"
        )
    handle.seek(8)
    layout = parse_safetensors_header(handle.read(header_len), name)
    if size < layout.file_bytes:
        raise ModelLoadError(
            f"{name}: cannot load safetensors: the file is truncated: its header describes "
            f"{layout.file_bytes} bytes but the file has {size}"
        )
    if size > layout.file_bytes:
        raise ModelLoadError(
            f"{name}: cannot load safetensors: {size - layout.file_bytes} bytes follow the "
            "tensor data its header describes (not one safetensors file)"
        )


def _classify_zip(names: list[str], name: str) -> str:
    _, members = split_members(names, name)
    if "archive_format" in members:
        return "exported-program"
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        return "torchscript"
    if "data.pkl" in members:
        return "state-dict"
    if "serialized_exported_program.json" in members:
        raise ModelLoadError(
            f"{name}: a torch.export archive in the pre-2.8 layout, which is loaded through "
            "pickle; re-save it with a current torch.export.save"
        )
    raise ModelLoadError(
        f"not a model file we can load safely: {name} is a zip archive of unknown layout; "
        f"{SUPPORTED}"
    )
