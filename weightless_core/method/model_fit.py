"""Do the model and the data fit? Checked once, before anything is changed, so a mismatch
fails in seconds with an error that names the fix instead of deep inside retraining.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from weightless_core.errors import DataError
from weightless_core.io.data import Dataset
from weightless_core.method.objective import output_kinds, output_tensors
from weightless_core.method.training import set_mode


@dataclass(frozen=True)
class Fit:
    """The data as the run will use it, and what the model's outputs are."""

    data: Dataset  # flattened if the model is an MLP fed images
    kinds: tuple[str, ...]  # without labels: how each output is compared with the dense one


def check_fit(
    model: nn.Module,
    data: Dataset,
    device: torch.device,
    outputs: str,
    *,
    on_note: Callable[[str], None],
) -> Fit:
    """Run the model on a few samples and check its outputs against the labels, if any.

    The one change made for the user, flattening images for an MLP, is told to ``on_note``.
    """
    d = data
    if d.x_train.shape[0] == 0 or d.x_val.shape[0] == 0:
        raise DataError("training and validation data must both be non-empty")
    try:
        out = probe(model, d, device)
    except DataError:
        width = first_linear_width(model)
        if len(d.input_shape) < 2 or width != math.prod(d.input_shape):
            raise
        # An MLP fed images: its first Linear takes exactly one flattened sample, so
        # flattening is the one fix, and the user's own inputs are flat already.
        out = probe(model, d.flattened(), device)
        shape = " x ".join(map(str, d.input_shape))
        d = d.flattened()
        on_note(
            f"samples of shape {shape} were flattened to {width} values: the model's first "
            f"layer is a Linear with {width} inputs"
        )
    if not d.labelled:  # any outputs: the dense model's own are the target
        return Fit(d, output_kinds(output_tensors(out), outputs))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise DataError(
            "with labels the model must return logits of shape (batch, classes); for other "
            "outputs leave the labels out and it is retrained to match its dense self"
        )
    top = int(max(d.y_train.max(), d.y_val.max()))
    if top >= out.shape[1]:
        raise DataError(f"labels go up to {top} but the model has {out.shape[1]} outputs")
    return Fit(d, ())


def tied_notes(
    model: nn.Module, params: Mapping[str, nn.Parameter], targets: Sequence[str]
) -> list[str]:
    """Tied weights (one tensor under two names, e.g. an embedding and its output layer):
    the first name is encoded, the other is stored as it is; the report says so."""
    owner = {id(params[n]): n for n in targets}
    notes = []
    for name, p in model.named_parameters(remove_duplicate=False):
        first = owner.get(id(p))
        if first is not None and first != name:
            notes.append(
                f"{name} is the same tensor as {first} (tied weights): {first} is encoded, "
                f"{name} stored as it is, a second copy"
            )
    return notes


def probe(model: nn.Module, d: Dataset, device: torch.device) -> Any:
    """The model's output on three validation samples; ``DataError`` naming the fix."""
    # An odd batch of 3 also catches exported programs traced with a fixed batch size.
    batch = d.x_val[:3].to(device)
    try:
        with torch.no_grad():
            set_mode(model, False)
            return model(batch)
    except AssertionError as e:  # torch.export's shape guards
        raise DataError(
            f"the model accepts only a fixed input shape ({_first_line(e)}); export it with "
            "a dynamic batch dimension (torch.export.Dim) so it can be retrained"
        ) from None
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        width = first_linear_width(model)
        hint = ""
        if width is not None and width != math.prod(d.input_shape):
            hint = (
                f"; its first layer is a Linear with {width} inputs, the samples have "
                f"{math.prod(d.input_shape)} values"
            )
        raise DataError(
            f"model and data do not fit: inputs of shape {tuple(d.input_shape)} fail in "
            f"the model ({_first_line(e)}){hint}"
        ) from None


def first_linear_width(model: nn.Module) -> int | None:
    """Inputs per sample of the model's first layer if it is a Linear (its first weight of two
    or more dimensions is a matrix), else ``None``. Works for eager, TorchScript and exported
    models alike, as all list their parameters in definition order."""
    first = next((p for p in model.parameters() if p.dim() >= 2), None)
    return int(first.shape[1]) if first is not None and first.dim() == 2 else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
