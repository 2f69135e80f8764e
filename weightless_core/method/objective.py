"""Retraining and scoring without labels: the dense model's own outputs are the target.

A model already in production usually comes with inputs but no labels, and need not be a
classifier. Without labels the compressed model is trained to reproduce the dense model
(self-distillation) and scored by how closely it does, for whatever it returns: one tensor, a
tuple or a dict of them (summed over their floating tensors, in key order for dicts).

Each output is either ``"logits"`` (class scores over its last dimension: KL divergence at a
temperature to train, top-1 agreement to score) or ``"values"`` (real-valued: mean squared
error to train, relative error to score). ``"auto"`` takes floating outputs whose last
dimension has at least two entries for logits, anything else for values; say ``"values"`` for
a regression with several outputs.

Scores are "higher is better" percentages, like accuracy, so the same budget rules apply:
``agreement`` (every output logits) is the share of rows whose top class matches the dense
model's; ``fidelity`` is 100 * (1 - relative error), the error being |y - y_dense| / |y_dense|
(L2 norms) over the whole split, averaged with the agreements of any logits outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightless_core.errors import DataError, InvalidInputError
from weightless_core.reports.report import METRIC_NAMES  # noqa: F401  (re-exported)

OUTPUT_CHOICES = ("auto", "logits", "values")


def output_tensors(out: object) -> list[torch.Tensor]:
    """The floating tensors of a model's output, flattened from tuples, lists and dicts."""
    found: list[torch.Tensor] = []

    def walk(value: object) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                found.append(value)
        elif isinstance(value, Mapping):
            for key in sorted(value, key=str):
                walk(value[key])
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)

    walk(out)
    return found


def output_kinds(outputs: Sequence[torch.Tensor], choice: str) -> tuple[str, ...]:
    """``"logits"`` or ``"values"`` per output, as ``choice`` (one of ``OUTPUT_CHOICES``) says."""
    if choice not in OUTPUT_CHOICES:
        raise InvalidInputError(f"outputs must be one of {OUTPUT_CHOICES}, got {choice!r}")
    if not outputs:
        raise DataError("the model returns no floating tensor to retrain against")
    if choice != "auto":
        return tuple(choice for _ in outputs)
    return tuple("logits" if t.dim() >= 2 and t.shape[-1] >= 2 else "values" for t in outputs)


def metric_of(kinds: Sequence[str]) -> str:
    return "agreement" if all(k == "logits" for k in kinds) else "fidelity"


@torch.no_grad()
def outputs_of(model: nn.Module, x: torch.Tensor, *, device: torch.device) -> list[torch.Tensor]:
    """Every floating output of ``model`` for all of ``x`` (CPU, float32), in batches of 1,000."""
    parts: list[list[torch.Tensor]] = []
    for start in range(0, x.shape[0], 1000):
        outs = output_tensors(model(x[start : start + 1000].to(device)))
        parts.append([o.detach().float().cpu() for o in outs])
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]


def distill_loss(
    outputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    kinds: Sequence[str],
    *,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Sum over outputs of KL divergence (logits, scaled by T² as Hinton et al.) or MSE."""
    if len(outputs) != len(targets):
        raise DataError(
            f"the model returned {len(outputs)} floating outputs but {len(targets)} before; "
            "its outputs must keep their structure"
        )
    total = outputs[0].new_zeros(())
    for out, target, kind in zip(outputs, targets, kinds, strict=True):
        if kind == "logits":
            width = out.shape[-1]
            total = total + temperature**2 * nn.functional.kl_div(
                nn.functional.log_softmax(out.reshape(-1, width).float() / temperature, dim=1),
                nn.functional.log_softmax(target.reshape(-1, width) / temperature, dim=1),
                reduction="batchmean",
                log_target=True,
            )
        else:
            total = total + nn.functional.mse_loss(out.float(), target)
    return total


@dataclass
class Teacher:
    """The dense model's outputs on every split, and how to train and score against them."""

    kinds: tuple[str, ...]
    train: list[torch.Tensor]
    val: list[torch.Tensor]
    test: list[torch.Tensor] | None = None

    @property
    def metric(self) -> str:
        return metric_of(self.kinds)

    def batch(self, idx: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        return [t[idx].to(device, non_blocking=True) for t in self.train]

    @torch.no_grad()
    def score(
        self, model: nn.Module, x: torch.Tensor, split: str, *, device: torch.device
    ) -> float:
        """Agreement or fidelity (%) of ``model`` with the dense model on ``split``."""
        targets = self.val if split == "val" else self.test
        assert targets is not None, f"no dense outputs for the {split} split"
        outs = outputs_of(model, x, device=device)
        if len(outs) != len(targets):
            raise DataError("the model's outputs changed their structure while compressed")
        parts = []
        for out, target, kind in zip(outs, targets, self.kinds, strict=True):
            if kind == "logits":
                width = out.shape[-1]
                same = out.reshape(-1, width).argmax(1) == target.reshape(-1, width).argmax(1)
                parts.append(100.0 * float(same.float().mean()))
            else:
                norm = float(target.norm())
                error = float((out - target).norm()) / norm if norm > 0 else float(out.norm())
                parts.append(100.0 * (1.0 - error))
        return sum(parts) / len(parts)
