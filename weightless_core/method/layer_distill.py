"""Layer-wise distillation: the compressed model's layers match the dense model's, output by output.

Logit distillation ties the two models at the end only; a pruned layer can then drift from
what its dense self computed as long as the logits come out right on the training images. Here
every compressed layer's output is also pulled towards the dense layer's output on the same
batch (the relative squared error, so wide and narrow layers weigh alike), the signal
sparse fine-tuning of large models recovers with (layer-wise distillation, as in oBERT,
Kurtic et al. 2022). A unit pruned whole still matches the dense unit's mean through its bias.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from weightless_core.errors import InvalidInputError, listed_names


def module_of(param_name: str) -> str:
    """The module that owns parameter ``param_name`` (``"fc1.weight"`` -> ``"fc1"``)."""
    return param_name.rpartition(".")[0]


def matchable(model: nn.Module, param_names: Sequence[str], sample: torch.Tensor) -> list[str]:
    """Those of ``param_names`` whose module reports a tensor output when ``model`` runs on
    ``sample`` (a module returning a tuple, such as a GRU, is left out); refused, by name, if
    none does: a TorchScript or exported graph runs without calling its modules."""
    if isinstance(model, torch.jit.ScriptModule):
        raise InvalidInputError(
            "distill_layers matches each compressed layer's output, which a TorchScript "
            "model does not report: set distill_layers=0"
        )
    owners: dict[str, nn.Module] = {}
    for name in param_names:
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(module_of(name))
            if module is not model:
                owners[module_of(name)] = module
    seen: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(_keeper(seen, m)) for m, module in owners.items()]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    usable = [n for n in param_names if module_of(n) in seen]
    if not usable:
        raise InvalidInputError(
            "distill_layers matches each compressed layer's output, and no compressed tensor's "
            f"module (of {listed_names(param_names)}) reported one here "
            "(exported and tensor-file models do not): set distill_layers=0"
        )
    return usable


def _keeper(into: dict[str, torch.Tensor], name: str) -> Callable[..., None]:
    """A forward hook that keeps its module's output under ``name`` when it is a tensor."""

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            into[name] = output

    return hook


class LayerMatch:
    """Outputs of the same layers of a student and a frozen teacher, captured by hooks while
    both run on a batch, and the relative squared error between them."""

    def __init__(self, student: nn.Module, teacher: nn.Module, names: Sequence[str]) -> None:
        self.teacher = teacher
        self.modules = list(dict.fromkeys(module_of(n) for n in names))
        self.student_out: dict[str, torch.Tensor] = {}
        self.teacher_out: dict[str, torch.Tensor] = {}
        self._hooks = [
            student.get_submodule(m).register_forward_hook(_keeper(self.student_out, m))
            for m in self.modules
        ] + [
            teacher.get_submodule(m).register_forward_hook(_keeper(self.teacher_out, m))
            for m in self.modules
        ]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over layers of ``|student - teacher|^2 / |teacher|^2`` on ``x``; the student
        has just run on ``x`` (its outputs are the hooks' last)."""
        with torch.no_grad():
            self.teacher(x)
        parts = []
        for m in self.modules:
            s, t = self.student_out.pop(m, None), self.teacher_out.pop(m, None)
            if s is None or t is None:
                continue
            t = t.to(s.dtype)
            parts.append((s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12))
        if not parts:
            raise InvalidInputError("distill_layers: no compressed layer reported an output")
        return torch.stack(parts).mean()

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self.student_out.clear()
        self.teacher_out.clear()


@contextlib.contextmanager
def matched(
    student: nn.Module, teacher: nn.Module | None, names: Sequence[str]
) -> Iterator[LayerMatch | None]:
    """A ``LayerMatch`` for the training loop (``None`` without a teacher or layers), its hooks
    removed however training ends."""
    if teacher is None or not names:
        yield None
        return
    match = LayerMatch(student, teacher, names)
    try:
        yield match
    finally:
        match.close()
