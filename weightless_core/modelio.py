"""Loading a user's trained model safely: no file is ever unpickled with arbitrary globals.

Four formats are accepted, recognised by content (never by extension):

* ``torchscript``: ``torch.jit.save`` archives, read by TorchScript's own loader;
* ``exported-program``: ``torch.export.save`` ``.pt2`` archives. ``torch.export.load`` unpickles
  some payloads, ``eval``\\ s symbolic-shape strings, ``exec``\\ s guard code and resolves graph
  targets to arbitrary callables, so the archive is vetted first (``_vet_pt2``): only
  static-shape graphs of ``torch.ops.aten`` operators whose tensors are stored raw are loaded;
* ``state-dict``: a ``torch.save``\\ d flat ``dict[str, Tensor]``, read with
  ``weights_only=True`` (torch's restricted unpickler);
* ``safetensors``.

The two weight-only formats need ``arch`` (see ``weightless_core.models``). Every failure is a
``ModelLoadError`` whose message gives the reason, not a traceback.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightless_core.errors import InvalidInputError, ModelLoadError
from weightless_core.models import ARCHITECTURES, build_model

FORMATS: tuple[str, ...] = ("torchscript", "exported-program", "state-dict", "safetensors")
DEFAULT_MAX_BYTES = 2 * 1024**3

_SUPPORTED = (
    "supported formats are TorchScript (torch.jit.save), torch.export programs "
    "(torch.export.save, .pt2), a torch.save'd state_dict of plain tensors, and safetensors"
)
_SAFETENSORS_MAX_HEADER = 100 * 1024**2
_MAX_REASON_CHARS = 400

# Members a torch.export.save archive may hold, relative to its single top-level folder.
_PT2_FIXED_MEMBERS = frozenset(
    {"archive_format", "archive_version", "byteorder", "version", ".format_version"}
    | {".storage_alignment"}
)
_PT2_MEMBER_PATTERNS = (
    re.compile(r"\.data/[A-Za-z0-9_.]+"),
    re.compile(r"models/[A-Za-z0-9_]+\.json"),
    re.compile(r"data/weights/weight_[0-9]+"),
    re.compile(r"data/weights/[A-Za-z0-9_]+_weights_config\.json"),
    re.compile(r"data/constants/tensor_[0-9]+"),
    re.compile(r"data/constants/[A-Za-z0-9_]+_constants_config\.json"),
    re.compile(r"data/sample_inputs/[A-Za-z0-9_]+\.pt"),
    re.compile(r"extra/[A-Za-z0-9_./-]+"),
)
# Graph node targets we let torch.export.load resolve: ATen operators and tuple indexing.
_PT2_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*")
_PT2_EXTRA_TARGETS = frozenset({"_operator.getitem"})
# Symbolic shapes (a dynamic batch dimension) are stored as strings that torch hands to
# sympy.sympify, which evaluates them. Only plain arithmetic on shape symbols is let through:
# the symbol declarations torch writes, names ``s<N>``, integers, + - * ( ), never ``**``.
_PT2_SYMBOL = re.compile(r"Symbol\('s\d+'(?:, (?:positive|integer)=True)*\)")
_PT2_SHAPE_EXPR = re.compile(r"[0-9s+\-*() ]{1,200}")
_PT2_SYMBOL_NAME = re.compile(r"s\d+")


@dataclass
class LoadedModel:
    """A loaded model: the module (CPU), the format it came from and its architecture if known."""

    module: nn.Module
    format: str
    arch: str | None


# --------------------------------------------------------------------------------------------
# Detection


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of the model file at ``path`` (one of ``FORMATS``), judged by its bytes.

    safetensors: an 8-byte little-endian header length ``2 <= N <= 100 MiB``, ``N <= size - 8``,
    then ``{``. Zip archives (everything ``torch.jit.save``, ``torch.export.save`` and
    ``torch.save`` write) must keep all members under one top-level folder ``<p>/`` with no
    duplicate names; then ``<p>/archive_format`` -> exported-program, ``<p>/constants.pkl`` plus
    ``<p>/code/...`` -> torchscript, ``<p>/data.pkl`` -> state-dict. Anything else, including
    legacy (non-zip) pickles, is a ``ModelLoadError``.
    """
    file = _existing_file(path)
    size = file.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{file.name}: the file is empty")
    with file.open("rb") as handle:
        head = handle.read(9)
    if _looks_like_safetensors(head, size):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ModelLoadError(f"{file.name}: damaged zip archive: {_reason(exc)}") from exc
        return _classify_zip(names, file.name)
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}"):
        what = "a legacy (non-zip) pickle, which could run arbitrary code when loaded"
    else:
        what = "unrecognised content"
    raise ModelLoadError(
        f"not a model file we can load safely: {file.name} is {what}; {_SUPPORTED}"
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= min(_SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{"


def _split_members(names: list[str], name: str) -> tuple[str, set[str]]:
    """The archive's top-level folder and its members relative to it (torch's zip layout)."""
    if not names:
        raise ModelLoadError(f"not a model file we can load safely: {name} is an empty zip")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{name}: zip archive has duplicate member names; refusing it")
    prefix = names[0].split("/", 1)[0]
    if "/" not in names[0] or not prefix or any(not n.startswith(prefix + "/") for n in names):
        raise ModelLoadError(
            f"not a model file we can load safely: {name} is a zip archive but not one written "
            f"by PyTorch (members are not under one folder); {_SUPPORTED}"
        )
    return prefix, {n[len(prefix) + 1 :] for n in names}


def _classify_zip(names: list[str], name: str) -> str:
    _, members = _split_members(names, name)
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
        f"{_SUPPORTED}"
    )


# --------------------------------------------------------------------------------------------
# Loading


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedModel:
    """Load the model file at ``path`` onto the CPU without running code stored in it.

    ``arch`` (a key of ``ARCHITECTURES``) is required for state-dict and safetensors files;
    ``input_shape`` (one sample, e.g. ``(1, 28, 28)``) and ``num_classes`` default to what the
    weights imply. Every floating tensor must be finite. Files over ``max_bytes`` are refused.
    """
    if arch is not None and arch not in ARCHITECTURES:
        raise InvalidInputError(
            f"unknown architecture {arch!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}"
        )
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if not input_shape or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape
        ):
            raise InvalidInputError(f"input_shape must be positive ints, got {input_shape!r}")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise InvalidInputError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidInputError(f"max_bytes must be a positive int, got {max_bytes!r}")

    file = _existing_file(path)
    size = file.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{file.name}: the file is empty")
    if size > max_bytes:
        raise ModelLoadError(f"{file.name}: {size} bytes is more than the limit of {max_bytes}")
    fmt = detect_format(file)

    if fmt in ("torchscript", "exported-program"):
        module = _load_torchscript(file) if fmt == "torchscript" else _load_pt2(file)
        _check_finite(_module_tensors(module), file.name)
        return LoadedModel(module=module, format=fmt, arch=arch)

    if arch is None:
        raise ModelLoadError(
            f"{file.name} is a plain {fmt} (weights only, no architecture); "
            f"--arch {'|'.join(sorted(ARCHITECTURES))} is needed for a plain state_dict"
        )
    state = _read_safetensors(file) if fmt == "safetensors" else _read_state_dict(file)
    _check_finite(state.items(), file.name)
    module = _module_from_state(state, arch, input_shape, num_classes, file.name)
    return LoadedModel(module=module, format=fmt, arch=arch)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"{file}: no such file")
    return file


def _reason(exc: BaseException) -> str:
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


def _load_torchscript(file: Path) -> nn.Module:
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # torch raises many types here; all mean "cannot load"
        raise ModelLoadError(f"{file.name}: cannot load TorchScript: {_reason(exc)}") from exc


def _load_pt2(file: Path) -> nn.Module:
    blob = file.read_bytes()  # vet and load the very same bytes
    _vet_pt2(blob, file.name)
    try:
        program = torch.export.load(io.BytesIO(blob))
        return program.module()
    except Exception as exc:  # torch raises many types here; all mean "cannot load"
        raise ModelLoadError(f"{file.name}: cannot load exported program: {_reason(exc)}") from exc


def _vet_pt2(blob: bytes, name: str) -> None:
    """Refuse a ``.pt2`` archive unless loading it cannot run code stored in it.

    Rules: members from a fixed allowlist only (no AOTInductor libraries, no legacy pickled
    weight files); every weight/constant stored raw (``use_pickle`` false, plain tensors);
    sample inputs loadable with ``weights_only=True``; the graph has no ``guards_code``
    (exec'd), symbolic shapes (``expr_str``, eval'd by sympy) only as plain arithmetic on shape
    symbols (so a dynamic batch dimension works), and only ATen operator targets.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            _, members = _split_members(archive.namelist(), name)
            prefix = archive.namelist()[0].split("/", 1)[0] + "/"

            def read(member: str) -> bytes:
                return archive.read(prefix + member)

            _vet_pt2_members(members, read, name)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{name}: damaged exported-program archive: {_reason(exc)}") from exc


def _vet_pt2_members(members: set[str], read: Callable[[str], bytes], name: str) -> None:
    refuse = f"{name}: refusing exported program"
    for member in sorted(members):
        if member not in _PT2_FIXED_MEMBERS and not any(
            p.fullmatch(member) for p in _PT2_MEMBER_PATTERNS
        ):
            raise ModelLoadError(f"{refuse}: unexpected archive member {member!r}")
    if read("archive_format").decode(errors="replace").strip() != "pt2":
        raise ModelLoadError(f"{refuse}: archive_format is not 'pt2'")
    models = sorted(m[len("models/") : -len(".json")] for m in members if m.startswith("models/"))
    if "model" not in models:
        raise ModelLoadError(f"{refuse}: no models/model.json in the archive")
    for model in models:
        for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
            if legacy in members:
                raise ModelLoadError(f"{refuse}: {legacy} is a pickled legacy payload")
        for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
            config = _json(read(f"data/{kind}/{model}_{kind}_config.json"), name)
            entries = config.get("config") if isinstance(config, dict) else None
            if not isinstance(entries, dict):
                raise ModelLoadError(f"{refuse}: malformed {kind} config")
            for fqn, meta in entries.items():
                if (
                    not isinstance(meta, dict)
                    or meta.get("use_pickle") is not False
                    or not str(meta.get("path_name", "")).startswith(prefix)
                ):
                    raise ModelLoadError(
                        f"{refuse}: {kind} entry {fqn!r} is pickled or not a plain tensor"
                    )
        sample = f"data/sample_inputs/{model}.pt"
        if sample in members and read(sample):
            try:
                torch.load(io.BytesIO(read(sample)), map_location="cpu", weights_only=True)
            except Exception as exc:  # any failure of the restricted unpickler
                raise ModelLoadError(f"{refuse}: sample inputs: {_reason(exc)}") from exc
        graph = _json(read(f"models/{model}.json"), name)
        if not isinstance(graph, dict):
            raise ModelLoadError(f"{refuse}: malformed models/{model}.json")
        if graph.get("guards_code"):
            raise ModelLoadError(f"{refuse}: it carries guard code, which we never run")
        _check_range_constraints(graph.get("range_constraints"), refuse)
        for key, value in _walk(graph):
            if key == "expr_str" and not _safe_shape_expr(value):
                raise ModelLoadError(
                    f"{refuse}: symbolic shape expression {str(value)[:80]!r} is not plain "
                    "arithmetic on shape symbols"
                )
            if key == "target" and not (
                isinstance(value, str)
                and (_PT2_TARGET.fullmatch(value) or value in _PT2_EXTRA_TARGETS)
                and "__" not in value
            ):
                raise ModelLoadError(
                    f"{refuse}: graph target {str(value)[:80]!r} is not an ATen operator"
                )


def _safe_shape_expr(value: object) -> bool:
    if not isinstance(value, str):
        return False
    plain = _PT2_SYMBOL.sub("s0", value)
    return bool(_PT2_SHAPE_EXPR.fullmatch(plain)) and "**" not in plain


def _check_range_constraints(constraints: object, refuse: str) -> None:
    if constraints in (None, {}):
        return
    if not isinstance(constraints, dict):
        raise ModelLoadError(f"{refuse}: malformed range constraints")
    for name, bounds in constraints.items():
        ok = (
            isinstance(name, str)
            and _PT2_SYMBOL_NAME.fullmatch(name)
            and isinstance(bounds, dict)
            and set(bounds) <= {"min_val", "max_val"}
            and all(v is None or type(v) is int for v in bounds.values())
        )
        if not ok:
            raise ModelLoadError(f"{refuse}: range constraint {str(name)[:40]!r} is malformed")


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ModelLoadError(f"{name}: malformed JSON in exported program: {exc}") from exc


def _walk(node: Any) -> Iterable[tuple[str, Any]]:
    """Every ``(key, value)`` pair of a JSON document, depth first, without recursion."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # restricted unpickler / zip reader failures
        raise ModelLoadError(f"{file.name}: cannot load state_dict: {_reason(exc)}") from exc
    if not isinstance(obj, Mapping):
        raise ModelLoadError(
            f"{file.name}: holds a {type(obj).__name__}, not a state_dict (dict of tensors)"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or type(v) is not torch.Tensor]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ModelLoadError(
            f"{file.name}: not a flat state_dict of tensors (entries {shown}); "
            "save model.state_dict() itself, not a checkpoint dict"
        )
    return dict(obj)


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except Exception as exc:  # SafetensorError and header parse errors
        raise ModelLoadError(f"{file.name}: cannot load safetensors: {_reason(exc)}") from exc


def _module_tensors(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    yield from module.state_dict().items()
    yield from module.named_buffers()


def _check_finite(tensors: Iterable[tuple[str, torch.Tensor]], name: str) -> None:
    for key, tensor in tensors:
        if (
            isinstance(tensor, torch.Tensor)
            and (tensor.is_floating_point() or tensor.is_complex())
            and not bool(torch.isfinite(tensor).all())
        ):
            raise ModelLoadError(f"{name}: tensor {key!r} contains NaN or Inf")


def _module_from_state(
    state: Mapping[str, torch.Tensor],
    arch: str,
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    name: str,
) -> nn.Module:
    inferred_shape, inferred_classes = _infer_dims(state, arch, name)
    shape = input_shape if input_shape is not None else inferred_shape
    classes = num_classes if num_classes is not None else inferred_classes
    try:
        with torch.device("meta"):  # no random init: every tensor is overwritten below
            module = build_model(arch, input_shape=shape, num_classes=classes)
    except InvalidInputError as exc:
        raise ModelLoadError(f"{name}: weights do not fit {arch}: {exc}") from exc
    module = module.to_empty(device="cpu")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(state))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {'; '.join(shapes)}")
    if problems:
        raise ModelLoadError(f"{name}: weights do not match {arch}: {'; '.join(problems)}")
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:  # e.g. a dtype that cannot be copied into float32
        raise ModelLoadError(f"{name}: weights do not fit {arch}: {_reason(exc)}") from exc
    return module


def _infer_dims(
    state: Mapping[str, torch.Tensor], arch: str, name: str
) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` implied by the weights of ``arch``."""

    def weight(key: str, ndim: int) -> torch.Tensor:
        tensor = state.get(key)
        if tensor is None or tensor.ndim != ndim:
            got = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
            raise ModelLoadError(
                f"{name}: weights do not look like {arch}: {key} is {got} "
                f"(expected a {ndim}-D tensor)"
            )
        return tensor

    if arch == "lenet-300-100":
        features = int(weight("fc1.weight", 2).shape[1])
        shape = {784: (1, 28, 28), 64: (1, 8, 8)}.get(features, (features,))
        return shape, int(weight("fc3.weight", 2).shape[0])
    in_channels = int(weight("conv1.weight", 4).shape[1])
    flat = int(weight("fc1.weight", 2).shape[1])
    side = math.isqrt(flat // 50) if flat % 50 == 0 else 0
    if side < 1 or 50 * side * side != flat:
        raise ModelLoadError(
            f"{name}: fc1.weight takes {flat} features, not 50*s*s for any feature-map side s"
        )
    size = 4 * side + 12  # smallest input whose feature map is side x side
    return (in_channels, size, size), int(weight("fc2.weight", 2).shape[0])


# --------------------------------------------------------------------------------------------
# Saving


def state_dict_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of ``module``'s state_dict (safe to save or mutate)."""
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    return {
        key: value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for key, value in module.state_dict().items()
    }


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write ``state`` as safetensors at ``path`` atomically (temp file + ``os.replace``).

    Readers never see a half-written file; an existing file is replaced only on success.
    """
    from safetensors.torch import save_file

    if not isinstance(state, Mapping):
        raise InvalidInputError(f"state must be a mapping of name -> tensor, got {type(state)}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise InvalidInputError(f"state entries must be str -> Tensor; bad entries: {bad[:5]}")
    target = Path(path)
    if not target.parent.is_dir():
        raise InvalidInputError(f"cannot write {target}: directory {target.parent} does not exist")
    tensors = {
        key: value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for key, value in state.items()
    }
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
