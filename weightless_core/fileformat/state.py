"""Turning a file back into dense tensors: a ``state_dict``, or straight into a module."""

from __future__ import annotations

import os

import torch

from weightless_core.errors import InvalidInputError, MalformedRecordError
from weightless_core.fileformat.reader import read_model
from weightless_core.fileformat.spec import WEIGHT_LAYERS, EncodedModel, PathLike
from weightless_core.method.layer import Backend, EncodedLayer


def load(
    path: PathLike, *, device: str | torch.device = "cpu", backend: Backend = "auto"
) -> dict[str, torch.Tensor]:
    """The dense ``state_dict`` in file order: encoded layers (both kinds) decoded to float32,
    or to the dtype the metadata's ``dtypes`` gives them (a bfloat16 or float16 input's own).

    On a GPU ``device`` the Weightless layers decode there (``EncodedLayer.to_torch``): the
    dense weights never exist in host memory.
    """
    from weightless_core.retrieval.torch_decode import checked_device

    device = checked_device(device)  # before reading: every kind of record goes there
    model = read_model(path)
    dtypes = _decoded_dtypes(model, path)
    out: dict[str, torch.Tensor] = {}
    for name, value in model.entries.items():
        if isinstance(value, EncodedLayer):
            out[name] = value.to_torch(device, backend=backend)
        elif isinstance(value, WEIGHT_LAYERS):
            out[name] = torch.from_numpy(value.decode()).to(device)
        else:
            out[name] = value.to(device)
        if name in dtypes:
            out[name] = out[name].to(dtypes[name])
    return out


_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _decoded_dtypes(model: EncodedModel, path: PathLike) -> dict[str, torch.dtype]:
    """The metadata's ``dtypes``: encoded layer name -> the dtype it was given in."""
    raw = model.metadata.get("dtypes", {})
    where = os.fspath(path)
    if not isinstance(raw, dict):
        raise MalformedRecordError(f"{where}: metadata 'dtypes' must be an object")
    out = {}
    for name, dtype in raw.items():
        if not isinstance(model.entries.get(name), WEIGHT_LAYERS):
            raise MalformedRecordError(f"{where}: metadata 'dtypes' names {name!r}, which is "
                                       "not an encoded layer of this file")  # fmt: skip
        if dtype not in _DTYPES:
            raise MalformedRecordError(
                f"{where}: metadata 'dtypes' gives {name!r} the dtype {dtype!r}; "
                f"known: {', '.join(_DTYPES)}"
            )
        out[name] = _DTYPES[dtype]
    return out


def load_into(module: torch.nn.Module, path: PathLike, *, strict: bool = True) -> None:
    """Copy the file's tensors into ``module``; mismatches raise ``InvalidInputError``.

    Checked up front so the message names every offending key and shape instead of torch's
    ``RuntimeError`` (and so nothing is copied when the file does not fit). Tensors decode on
    the GPU itself for a CUDA module, on CPU otherwise.
    """
    first = next(iter(module.parameters()), None)
    on_gpu = first is not None and first.device.type == "cuda"
    state = load(path, device=first.device if on_gpu else "cpu")
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
