"""Training under the constraints compression imposes: masks, shared weights, frozen layers.

Each compressed tensor has a ``Constraint``. A *masked* tensor trains normally but its pruned
positions stay zero. A *shared* tensor is ``centroids[codes]`` on its mask: the optimiser moves
the centroids by the summed gradient of their members (Deep Compression's weight sharing), so
the tensor keeps at most ``2**r`` distinct values. An encoded tensor is shared with codes read
back from its retrieval table (false positives included) and its centroids frozen.

A tensor with ``fp_rate`` > 0 trains with *simulated false positives*: before each step, each
pruned position of ``fp_grid`` takes a random one of the layer's values with probability
``fp_rate`` (fresh each step), as the table it will be stored in will do once (with its own
fixed pattern). A network trained to shrug off random false positives is already robust to the
one pattern its table ends up with.

A *regrowing* tensor (pruning with regrowth: Dynamic Network Surgery's splicing, Lin et al.'s
dynamic pruning with feedback) keeps a dense copy that the optimiser trains with the gradient
taken at the pruned weights; the mask is recomputed from the dense copy's magnitudes every few
steps, so a weight pruned too early grows back once its gradient says it matters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from weightless_core.io.data import Dataset
from weightless_core.method.layer_distill import matched
from weightless_core.method.objective import Teacher, distill_loss, output_tensors


@dataclass
class Constraint:
    """How one parameter may change during training.

    ``mask`` (bool, param's shape) marks positions that may be non-zero; ``codes`` (any integer
    dtype, uint8 in the pipeline: a quarter of int32's memory on a 100M-weight tensor; param's
    shape, ignored off the mask) and ``centroids`` (float32, (k,)) make it shared;
    ``frozen`` keeps the whole tensor fixed. ``dense`` (param's shape) makes it regrowing: the
    parameter is ``dense * mask`` and ``refresh`` keeps the ``keep`` largest entries of
    ``dense``.
    """

    param: nn.Parameter
    mask: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    centroids: torch.Tensor | None = None
    frozen: bool = False
    dense: torch.Tensor | None = None
    keep: int | None = None
    fp_rate: float = 0.0
    fp_grid: torch.Tensor | None = None
    grid: torch.Tensor | None = None  # regrowing: the positions the mask may use (None: all)

    @property
    def shared(self) -> bool:
        return self.codes is not None

    def simulate_false_positives(self) -> None:
        """Write a fresh random false-positive pattern into the parameter (``project``
        removes it again): positions of ``fp_grid`` with probability ``fp_rate``, each a
        uniformly random centroid (or, before clustering, a random kept weight)."""
        if self.fp_rate <= 0 or self.fp_grid is None or self.mask is None:
            return
        with torch.no_grad():
            p = self.param
            hits = (torch.rand(p.shape, device=p.device) < self.fp_rate) & self.fp_grid
            count = int(hits.sum())
            if count == 0:
                return
            pool = self.centroids.detach() if self.shared else p.detach()[self.mask]
            if pool.numel() == 0:
                return
            pick = torch.randint(pool.numel(), (count,), device=p.device)
            p[hits] = pool[pick].to(p.dtype)

    @property
    def regrowing(self) -> bool:
        return self.dense is not None

    def refresh(self) -> None:
        """Regrowing only: the mask keeps the ``keep`` largest-magnitude entries of ``dense``."""
        flat = self.dense.detach().abs().flatten()
        if self.grid is not None:  # outside the grid nothing may be kept
            flat = torch.where(self.grid.flatten(), flat, torch.full_like(flat, -1.0))
        top = torch.topk(flat, self.keep, sorted=False).indices
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[top] = True
        self.mask = mask.view(self.dense.shape)

    def settle(self) -> Constraint:
        """A plain masked constraint holding what a regrowing one has now (pruning is over)."""
        self.project()
        return Constraint(self.param, mask=self.mask, fp_rate=self.fp_rate, fp_grid=self.fp_grid)

    def clone(self) -> Constraint:
        """A copy whose tensors (not the parameter) are independent of this one's."""
        centroids = None
        if self.centroids is not None:
            centroids = self.centroids.detach().clone().requires_grad_(self.centroids.requires_grad)
        return Constraint(
            self.param,
            mask=None if self.mask is None else self.mask.clone(),
            codes=None if self.codes is None else self.codes.clone(),
            centroids=centroids,
            frozen=self.frozen,
            dense=None if self.dense is None else self.dense.detach().clone(),
            keep=self.keep,
            grid=self.grid,
            fp_rate=self.fp_rate,
            fp_grid=self.fp_grid,
        )

    def project(self) -> None:
        """Write the constrained value into the parameter."""
        with torch.no_grad():
            if self.regrowing:
                self.param.copy_(self.dense * self.mask)
            elif self.shared:  # temporaries the size of the kept weights, not of the tensor
                kept = self.centroids[self.codes[self.mask].long()].to(self.param.dtype)
                self.param.zero_()
                self.param[self.mask] = kept
            elif self.mask is not None:
                self.param.mul_(self.mask)

    def route_gradient(self) -> None:
        """Turn the parameter's gradient into the gradient of what is actually trained."""
        g = self.param.grad
        if g is None:
            return
        if self.regrowing:  # straight through: every dense weight learns, pruned ones included
            self.dense.grad = g.contiguous()  # the dense copy keeps the default layout
            self.param.grad = None
        elif self.shared:
            if self.centroids.requires_grad:
                member = g[self.mask].to(self.centroids.dtype)
                summed = torch.zeros_like(self.centroids).index_add_(
                    0, self.codes[self.mask].long(), member
                )
                self.centroids.grad = summed
            self.param.grad = None
        elif self.mask is not None:
            g.mul_(self.mask)


def trainable_tensors(model: nn.Module, constraints: dict[str, Constraint]) -> list[torch.Tensor]:
    """What the optimiser steps: free params, masked params, unfrozen centroids."""
    out: list[torch.Tensor] = []
    for name, p in model.named_parameters():
        c = constraints.get(name)
        if c is None:
            out.append(p)
        elif c.frozen:
            continue
        elif c.regrowing:
            out.append(c.dense)
        elif c.shared:
            if c.centroids.requires_grad:
                out.append(c.centroids)
        else:
            out.append(p)
    return out


def set_mode(model: nn.Module, training: bool) -> None:
    """``model.train(training)``, tolerating exported programs (which refuse mode switches)."""
    with contextlib.suppress(NotImplementedError):
        model.train(training)


def train_epochs(
    model: nn.Module,
    constraints: dict[str, Constraint],
    data: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    schedule: str = "constant",
    teacher_logits: torch.Tensor | None = None,
    distill: float = 0.0,
    temperature: float = 2.0,
    refresh_every: int = 16,
    teacher: Teacher | None = None,
    channels_last: bool | None = None,
    mixup: float = 0.0,
    dense_model: nn.Module | None = None,
    layer_distill: float = 0.0,
    layer_names: Sequence[str] = (),
    shift: int = 0,
) -> None:
    """Train ``epochs`` epochs of cross-entropy with Adam under ``constraints``.

    ``on_epoch(epoch, mean_loss)`` is called after each epoch (epochs count from 1) and
    ``on_batch(epoch, batch, num_batches)`` after each step (batches count from 1); either may
    raise to stop training (that is how cancellation reaches the loop). ``schedule="cosine"``
    decays the learning rate to 0 over the stage's steps, so each stage ends settled.

    With ``teacher_logits`` (the dense model's logits for every training sample, in order) and
    ``distill`` > 0 the loss mixes in knowledge distillation (Hinton et al. 2015): the compressed
    model also matches the dense model's softened outputs, which carry more signal per sample
    than the labels while it recovers from pruning and false positives.

    With ``mixup`` > 0 (labels, ``distill`` > 0 and ``dense_model`` needed) each input is
    mixed with another of its batch, a share drawn uniformly from [0, ``mixup``) of the other:
    the labels are mixed alike and the distillation target is ``dense_model``'s output on the
    mixed input. The compressed model then matches the dense one between training samples too,
    not only on them (function matching, Beyer et al. 2022).

    With ``layer_distill`` > 0 (and ``dense_model``) the output of each module owning one of
    ``layer_names`` is also matched to the dense model's on the same batch, weighted
    ``layer_distill`` (``method.layer_distill``).

    With ``shift`` > 0 (labels and image inputs ``(N, C, H, W)`` needed) each input is moved
    by its own random offset of up to ``shift`` pixels along each axis (the edge pixels fill
    what it leaves), and the distillation target is ``dense_model``'s output on the moved
    input when there is one (else the precomputed ``teacher_logits`` of the unmoved one).

    A data set without labels needs ``teacher`` (the dense model's outputs): the loss is then
    ``objective.distill_loss`` against them alone, for whatever the model returns.

    Regrowing constraints recompute their masks every ``refresh_every`` steps.
    ``channels_last=None`` picks the faster layout for convolutions by itself (``True`` or
    ``False`` force one, for benchmarks and tests).
    """
    if epochs <= 0:
        return
    for c in constraints.values():
        c.project()
    params = trainable_tensors(model, constraints)
    if not params:
        return
    names = layer_names if layer_distill > 0 else ()
    with (
        _training_layout(model, data.x_train[:8], device, channels_last) as fast,
        matched(model, dense_model, names) as match,
    ):
        opt = torch.optim.Adam(params, lr=lr)
        active = [c for c in constraints.values() if not c.frozen]
        regrowing = [c for c in active if c.regrowing]
        noisy = [c for c in active if c.fp_rate > 0 and not c.regrowing]
        x_all, y_all = data.x_train, data.y_train
        n = x_all.shape[0]
        num_batches = (n + batch_size - 1) // batch_size
        total_steps = epochs * num_batches
        step = 0
        set_mode(model, True)
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=generator)
            total, batches = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                x = x_all[idx].to(device, non_blocking=True)
                if shift > 0:
                    assert y_all is not None, "shifted inputs need labels"
                    x = _shifted(x, shift, generator)
                if fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                for c in constraints.values():
                    c.param.grad = None
                for c in noisy:
                    c.simulate_false_positives()
                if y_all is None:  # no labels: match the dense model's outputs
                    assert teacher is not None, "a data set without labels needs a teacher"
                    outs = output_tensors(model(x))
                    loss = distill_loss(outs, teacher.batch(idx, device), teacher.kinds,
                                        temperature=temperature)  # fmt: skip
                elif mixup > 0:
                    assert dense_model is not None and distill > 0, "mixup distils"
                    y = y_all[idx].to(device, non_blocking=True)
                    x, share, other = _mixed(x, mixup, generator)
                    logits = model(x)
                    with torch.no_grad():
                        soft = dense_model(x)
                    ce = nn.functional.cross_entropy(logits, y, reduction="none")
                    ce_other = nn.functional.cross_entropy(logits, y[other], reduction="none")
                    loss = ((1 - share) * ce + share * ce_other).mean()
                    loss = (1 - distill) * loss + distill * temperature**2 * _kd(
                        logits, soft, temperature
                    )
                else:
                    y = y_all[idx].to(device, non_blocking=True)
                    logits = model(x)
                    loss = nn.functional.cross_entropy(logits, y)
                    if distill > 0 and shift > 0 and dense_model is not None:
                        with torch.no_grad():  # the dense model's answer on the moved input
                            soft = dense_model(x)
                        kd = _kd(logits, soft, temperature)
                        loss = (1 - distill) * loss + distill * temperature**2 * kd
                    elif teacher_logits is not None and distill > 0:
                        soft = teacher_logits[idx].to(device, non_blocking=True)
                        kd = _kd(logits, soft, temperature)
                        loss = (1 - distill) * loss + distill * temperature**2 * kd
                if match is not None:
                    loss = loss + layer_distill * match.loss(x)
                loss.backward()
                if schedule == "cosine":
                    for group in opt.param_groups:
                        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
                step += 1
                for c in constraints.values():
                    if c.frozen:
                        c.param.grad = None
                    else:
                        c.route_gradient()
                opt.step()
                if regrowing and step % refresh_every == 0:
                    for c in regrowing:
                        c.refresh()
                for c in active:
                    c.project()
                total += float(loss.detach())
                batches += 1
                if on_batch is not None:
                    on_batch(epoch, batches, num_batches)
            if on_epoch is not None:
                on_epoch(epoch, total / max(batches, 1))
    set_mode(model, False)


def _mixed(
    x: torch.Tensor, mixup: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` with each input mixed with another of the batch (a share in [0, ``mixup``) of
    it), the shares and the other inputs' indices."""
    n = x.shape[0]
    other = torch.randperm(n, generator=generator).to(x.device)
    share = (torch.rand(n, generator=generator) * mixup).to(x.device, x.dtype)
    w = share.reshape(-1, *([1] * (x.dim() - 1)))
    return (1 - w) * x + w * x[other], share, other


def _shifted(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with each input moved by its own offset, drawn uniformly from
    [-``most``, ``most``] pixels along each axis; the pixels moved in repeat the edge (the
    background of a normalised image, whatever its value). One gather, no loop over offsets."""
    n, _, h, w = x.shape
    dy, dx = torch.randint(-most, most + 1, (2, n, 1), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device) - dy).clamp_(0, h - 1)  # (n, h): source row
    cols = (torch.arange(w, device=x.device) - dx).clamp_(0, w - 1)  # (n, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    moved = x[batch, :, rows.unsqueeze(2), cols.unsqueeze(1)]  # (n, h, w, C)
    return moved.permute(0, 3, 1, 2).contiguous()


def _kd(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence of the softened outputs from the teacher's (Hinton et al. 2015)."""
    return nn.functional.kl_div(
        nn.functional.log_softmax(logits / temperature, dim=1),
        nn.functional.log_softmax(soft / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )


@contextlib.contextmanager
def _training_layout(
    model: nn.Module, sample: torch.Tensor, device: torch.device, wanted: bool | None
) -> Iterator[bool]:
    """Train in channels-last layout where ``wanted`` (``None``: where ``_channels_last_ok``),
    and give the parameters back in the default layout however training ends."""
    fast = _channels_last_ok(model, sample, device) if wanted is None else wanted
    if fast:
        model.to(memory_format=torch.channels_last)
    try:
        yield fast
    finally:
        if fast:
            model.to(memory_format=torch.contiguous_format)


def _channels_last_ok(model: nn.Module, sample: torch.Tensor, device: torch.device) -> bool:
    """Whether to train in channels-last layout: on CPU, oneDNN's convolutions and pooling are
    about 1.5x faster that way (LeNet-5: 18 instead of 27 ms a step at 2 threads; TorchScript
    uploads 24 instead of 41). Only models with 2-d convolutions whose output is unchanged in
    that layout qualify, so one that ``view``s a feature map (which needs the default layout)
    just trains as before."""
    if device.type != "cpu" or sample.dim() != 4:
        return False
    # a TorchScript module keeps its class name in ``original_name``
    convs = (isinstance(m, nn.Conv2d) or getattr(m, "original_name", "") == "Conv2d"
             for m in model.modules())  # fmt: skip
    if not any(convs):
        return False
    was_training = model.training
    try:
        with torch.no_grad():
            set_mode(model, False)
            x = sample.to(device)
            ref = model(x)
            model.to(memory_format=torch.channels_last)
            out = model(x.contiguous(memory_format=torch.channels_last))
            same = isinstance(ref, torch.Tensor) and torch.allclose(ref, out, atol=1e-4)
    except (RuntimeError, TypeError, NotImplementedError):
        same = False
    finally:
        model.to(memory_format=torch.contiguous_format)
        set_mode(model, was_training)
    return bool(same)


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, *, device: torch.device) -> torch.Tensor:
    """The model's logits for every sample of ``x`` (CPU, float32), in batches of 1,000."""
    set_mode(model, False)
    parts = [model(x[i : i + 1000].to(device)).float().cpu() for i in range(0, x.shape[0], 1000)]
    return torch.cat(parts)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device) -> float:
    """Top-1 accuracy in percent, evaluated in batches of 1,000."""
    set_mode(model, False)
    correct = 0
    for start in range(0, x.shape[0], 1000):
        logits = model(x[start : start + 1000].to(device))
        correct += int((logits.argmax(dim=1) == y[start : start + 1000].to(device)).sum())
    return 100.0 * correct / max(x.shape[0], 1)


def parameters_by_name(model: nn.Module) -> dict[str, nn.Parameter]:
    """Named parameters, shared ones listed once (first name wins)."""
    seen: dict[int, str] = {}
    out: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) not in seen:
            seen[id(p)] = name
            out[name] = p
    return out
