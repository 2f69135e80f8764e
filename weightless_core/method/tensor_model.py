"""A checkpoint without code as a module: its tensors under their own names, and no forward.

Most teams hold exactly such checkpoints (safetensors, a ``state_dict``), and to store or ship a
model no code is needed: every large floating matrix is compressed data-free and the rest is
kept as it is, so ``weightless decode`` gives back the same names, shapes and dtypes. Retraining
needs a forward pass, so a ``TensorModel`` refuses to run; ``compress`` refuses it with data.

A ``TensorModel`` holds only each tensor's shape and dtype and a way to read it: ``compress``
reads, compresses and drops one tensor at a time (``weightless_core.method.streaming``), so a
checkpoint of any size needs memory for its largest tensor, not for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from weightless_core.errors import DataError, ModelLoadError


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class TensorModel(nn.Module):
    """The tensors of a checkpoint by name (``specs``, in file order), read on demand."""

    def __init__(
        self,
        specs: Mapping[str, TensorSpec],
        read: Callable[[str], torch.Tensor],
        *,
        source: str = "checkpoint",
    ) -> None:
        super().__init__()
        check_names(specs, source)
        self.specs = dict(specs)
        self.source = source
        self._read = read

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor], *, source: str = "tensors") -> TensorModel:
        """Tensors already in memory."""
        specs = {n: TensorSpec(tuple(t.shape), t.dtype) for n, t in state.items()}
        return cls(specs, lambda name: state[name], source=source)

    def load(self, name: str) -> torch.Tensor:
        """One tensor, read now (the caller drops it when done)."""
        tensor = self._read(name)
        spec = self.specs[name]
        if tuple(tensor.shape) != spec.shape or tensor.dtype != spec.dtype:
            raise ModelLoadError(f"{self.source}: tensor {name!r} changed while it was read")
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
            torch.isfinite(tensor).all()
        ):
            raise ModelLoadError(f"{self.source}: tensor {name!r} contains NaN or Inf")
        return tensor

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.specs:
            yield name, self.load(name)

    def state_dict(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Every tensor, read into memory: for small checkpoints and tests."""
        return dict(self.tensors())

    def materialized(self) -> nn.Module:
        """A module holding every tensor (``nested_module``), for paths that need them all."""
        return nested_module(self.state_dict(), source=self.source)

    def refusal(self) -> str:
        return (
            f"{self.source} holds weights only, no model code: it can be compressed data-free "
            "(without a data set) but not run or retrained; to retrain, give its architecture "
            "(--arch) or a TorchScript or torch.export file"
        )

    def forward(self, *args: object) -> torch.Tensor:
        raise DataError(self.refusal())


def check_names(names: Mapping[str, object], source: str) -> None:
    """Refuse names a module cannot hold: an empty part, or a tensor that is also a prefix."""
    tensors = set(names)
    for name in names:
        parts = name.split(".")
        if not all(parts):
            raise ModelLoadError(f"{source}: tensor name {name!r} has an empty part")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in tensors:
                raise ModelLoadError(_clash(source, prefix))


def nested_module(state: Mapping[str, torch.Tensor], *, source: str = "tensors") -> nn.Module:
    """A plain module with ``state`` as its state_dict: floating tensors as parameters, the
    others as buffers, nested by their dotted names (``h.0.attn.weight`` -> ``h``, ``0``,
    ``attn``)."""
    check_names(state, source)
    root = nn.Module()
    for name, tensor in state.items():
        *path, leaf = name.split(".")
        owner = root
        for part in path:
            child = owner._modules.get(part)
            if child is None:
                child = nn.Module()
                owner.add_module(part, child)
            owner = child
        value = tensor.detach()
        if value.is_floating_point():
            owner.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            owner.register_buffer(leaf, value)
    return root


def _clash(source: str, name: str) -> str:
    return f"{source}: {name!r} is both a tensor and a prefix of other tensors' names"
