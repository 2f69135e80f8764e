"""A checkpoint without code as a module: its tensors under their own names, and no forward.

Most teams hold exactly such checkpoints (safetensors, a ``state_dict``), and to store or ship a
model no code is needed: every large floating matrix is compressed data-free and the rest is
kept as it is, so ``weightless decode`` gives back the same names, shapes and dtypes. Retraining
needs a forward pass, so a ``TensorModel`` refuses to run; ``compress`` refuses it with data.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from weightless_core.errors import DataError, ModelLoadError


class TensorModel(nn.Module):
    """Floating tensors become parameters, the others buffers, nested by their dotted names
    (``h.0.attn.weight`` -> module ``h``, ``0``, ``attn``), so ``state_dict()`` gives the names
    back. Dtypes are kept; ``compress`` works in float32 and restores them in the file."""

    def __init__(self, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
        super().__init__()
        self.source = source
        for name, tensor in state.items():
            *path, leaf = name.split(".")
            if not leaf or any(not part for part in path):
                raise ModelLoadError(f"{source}: tensor name {name!r} has an empty part")
            owner: nn.Module = self
            for i, part in enumerate(path):
                child = owner._modules.get(part)
                if child is None:
                    if part in owner._parameters or part in owner._buffers:
                        raise ModelLoadError(_clash(source, ".".join(path[: i + 1])))
                    child = nn.Module()
                    owner.add_module(part, child)
                owner = child
            if leaf in owner._modules or leaf in owner._parameters or leaf in owner._buffers:
                raise ModelLoadError(_clash(source, name))
            value = tensor.detach()
            if value.is_floating_point():
                owner.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
            else:
                owner.register_buffer(leaf, value)

    def refusal(self) -> str:
        return (
            f"{self.source} holds weights only, no model code: it can be compressed data-free "
            "(without a data set) but not run or retrained; to retrain, give its architecture "
            "(--arch) or a TorchScript or torch.export file"
        )

    def forward(self, *args: object) -> torch.Tensor:
        raise DataError(self.refusal())


def _clash(source: str, name: str) -> str:
    return f"{source}: {name!r} is both a tensor and a prefix of other tensors' names"
