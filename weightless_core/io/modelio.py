"""Loading a user's trained model safely: no file is ever unpickled with arbitrary globals.

Four formats are accepted, recognised by content, never by extension
(``model_files.detect_format``, which imports no torch):

* ``torchscript``: ``torch.jit.save`` archives, read by TorchScript's own loader;
* ``exported-program``: ``torch.export.save`` ``.pt2`` archives. ``torch.export.load`` unpickles
  some payloads, ``eval``\\ s symbolic-shape strings, ``exec``\\ s guard code and resolves graph
  targets to arbitrary callables, so the archive is vetted first (``pt2_vetting``): only
  static-shape graphs of ``torch.ops.aten`` operators whose tensors are stored raw are loaded;
* ``state-dict``: a ``torch.save``\\ d flat ``dict[str, Tensor]``, read with
  ``weights_only=True`` (torch's restricted unpickler);
* ``safetensors``.

The two weight-only formats take ``arch`` (see ``weightless_core.models.lenet``) to become a model
that runs; without it they load as a ``TensorModel`` (tensors only, compressed data-free). Every
failure is a ``ModelLoadError`` whose message gives the reason, not a traceback.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from weightless_core.errors import InvalidInputError, ModelLoadError
from weightless_core.io.atomic import atomic_path
from weightless_core.io.model_files import (
    DEFAULT_MAX_BYTES,
    detect_format,
    existing_file,
    reason,
)
from weightless_core.io.pt2_vetting import vet_exported_program
from weightless_core.method.tensor_model import TensorModel, TensorSpec
from weightless_core.models.lenet import ARCHITECTURES, build_model


@dataclass
class LoadedModel:
    """A loaded model: the module (CPU), the format it came from and its architecture if known."""

    module: nn.Module
    format: str
    arch: str | None

    @property
    def tensors_only(self) -> bool:
        """Weights without code (a ``TensorModel``): compressed data-free only."""
        return isinstance(self.module, TensorModel)


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

    ``arch`` (a key of ``ARCHITECTURES``) builds that model from state-dict and safetensors
    files; without it they load as a ``TensorModel``;
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

    file = existing_file(path)
    size = file.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{file.name}: the file is empty")
    if size > max_bytes:
        raise ModelLoadError(f"{file.name}: {size} bytes is more than the limit of {max_bytes}")
    fmt = detect_format(file, max_bytes=max_bytes)

    if fmt in ("torchscript", "exported-program"):
        module = _load_torchscript(file) if fmt == "torchscript" else _load_pt2(file, max_bytes)
        _check_finite(_module_tensors(module), file.name)
        return LoadedModel(module=module, format=fmt, arch=arch)

    if arch is None:  # read lazily, one tensor at a time, as compress needs them
        return LoadedModel(module=_tensor_model(file, fmt), format=fmt, arch=None)
    state = _read_safetensors(file) if fmt == "safetensors" else _read_state_dict(file)
    _check_finite(state.items(), file.name)
    module = _module_from_state(state, arch, input_shape, num_classes, file.name)
    return LoadedModel(module=module, format=fmt, arch=arch)


def _load_torchscript(file: Path) -> nn.Module:
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # torch raises many types here; all mean "cannot load"
        raise ModelLoadError(f"{file.name}: cannot load TorchScript: {reason(exc)}") from exc


def _load_pt2(file: Path, max_bytes: int) -> nn.Module:
    blob = file.read_bytes()  # vet and load the very same bytes
    vet_exported_program(blob, file.name, max_bytes=max_bytes)
    try:
        program = torch.export.load(io.BytesIO(blob))
        return program.module()
    except Exception as exc:  # torch raises many types here; all mean "cannot load"
        raise ModelLoadError(f"{file.name}: cannot load exported program: {reason(exc)}") from exc


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


def _tensor_model(file: Path, fmt: str) -> TensorModel:
    """A checkpoint without code, its tensors read when asked for (safetensors reads one
    tensor's bytes; a state_dict is memory-mapped)."""
    if fmt == "state-dict":
        state = _read_state_dict(file, mmap=True)
        return TensorModel.of(state, source=file.name)
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
            raw = {k: (tuple(v.get_shape()), v.get_dtype()) for k, v in slices.items()}
    except Exception as exc:  # SafetensorError and header parse errors
        raise ModelLoadError(f"{file.name}: cannot load safetensors: {reason(exc)}") from exc
    unknown = sorted({d for _, d in raw.values() if d not in _SAFETENSORS_DTYPES})
    if unknown:
        raise ModelLoadError(
            f"{file.name}: tensors of dtype {', '.join(unknown)} are not supported"
        )
    specs = {k: TensorSpec(shape, _SAFETENSORS_DTYPES[d]) for k, (shape, d) in raw.items()}

    def read(name: str) -> torch.Tensor:
        try:
            with safe_open(str(file), framework="pt") as f:
                return f.get_tensor(name).clone()  # its own memory, not the file's mapping
        except Exception as exc:
            raise ModelLoadError(f"{file.name}: cannot read {name!r}: {reason(exc)}") from exc

    return TensorModel(specs, read, source=file.name)


def _read_state_dict(file: Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # restricted unpickler / zip reader failures
        raise ModelLoadError(f"{file.name}: cannot load state_dict: {reason(exc)}") from exc
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
        raise ModelLoadError(f"{file.name}: cannot load safetensors: {reason(exc)}") from exc


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
        raise ModelLoadError(f"{name}: weights do not fit {arch}: {reason(exc)}") from exc
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
    # No copy of what is contiguous on the CPU already (a decoded model can be most of the
    # memory), except where tensors share storage, which safetensors refuses (tied weights).
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(ptr)
        tensors[key] = tensor
    with atomic_path(target) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
