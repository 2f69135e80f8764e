"""The paper's Algorithm 1: prune -> cluster -> encode layer by layer, retraining around errors.

Encoding is sequential because each encoded layer's false positives are deterministic errors
that the layers after it learn to absorb: a layer is encoded, replaced by what its table
decodes, frozen, and the remaining layers are retrained before the next one is encoded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from weightless_core import fileformat
from weightless_core.baselines.context_coded import ContextCodedLayer, context_code
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.baselines.strongest import (
    deep_compress_best,
    deep_compression_bits,
    entropy_bound_bits,
    sparse_index_bound_bits,
)
from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import DataError, InvalidInputError, listed_names
from weightless_core.io.data import Dataset
from weightless_core.method.cluster import (
    capped_kmeans,
    cluster_to_counts,
    kmeans_1d,
    squared_error,
)
from weightless_core.method.layer import EncodedLayer, encode_layer
from weightless_core.method.layer_distill import matchable
from weightless_core.method.model_fit import check_fit, tied_notes
from weightless_core.method.objective import (
    Teacher,
    distill_loss,
    output_tensors,
    outputs_of,
)
from weightless_core.method.progress import (
    STAGES,
    Progress,
    ProgressCallback,
    ProgressMeter,
    work_units,
)
from weightless_core.method.prune import kept_count, magnitude_mask, schedule, unit_grid
from weightless_core.method.tensor_model import TensorModel
from weightless_core.method.training import (
    Constraint,
    accuracy,
    logits_of,
    parameters_by_name,
    set_mode,
    train_epochs,
)
from weightless_core.method.variants import Snapshot, check_variant, clusters_differ
from weightless_core.reports.report import Report
from weightless_core.reports.report_builder import RunRecord, build_report, file_metadata
from weightless_core.retrieval.hashing import derive_seed

__all__ = [
    "STAGES",
    "CompressionResult",
    "Progress",
    "ProgressCallback",
    "compress",
    "compress_variants",
    "resolve_device",
    "select_targets",
]


@dataclass
class CompressionResult:
    """The compressed model (weights replaced by what the file decodes) and what to save."""

    model: nn.Module
    entries: dict[str, fileformat.Entry]
    metadata: dict[str, Any]
    report: Report
    # What Deep Compression stored for the same weights (``report.baseline``'s entries).
    baseline_entries: dict[str, fileformat.Entry] | None = None

    def to_bytes(self) -> bytes:
        return fileformat.to_bytes(self.entries, metadata=self.metadata)

    def save(self, path: str | Path) -> int:
        """Write the encoded-model file atomically; returns its size in bytes."""
        return fileformat.save(path, self.entries, metadata=self.metadata)


def select_targets(params: Mapping[str, nn.Parameter], settings: CompressionSettings) -> list[str]:
    """Names of the tensors to encode, in definition order; validates explicit choices."""
    if settings.encode is not None:
        unknown = [n for n in settings.encode if n not in params]
        if unknown:
            raise InvalidInputError(
                f"encode names unknown tensors {listed_names(unknown)}; "
                f"the model has {listed_names(list(params))}"
            )
        chosen = set(settings.encode)
        targets = [n for n in params if n in chosen]
    else:
        targets = [
            n
            for n, p in params.items()
            if p.dim() >= 2 and p.numel() >= settings.min_elements and p.is_floating_point()
        ]
    stray = sorted(set(settings.layers) - set(targets))
    if stray:
        raise InvalidInputError(
            f"per-layer settings name tensors that are not encoded: {listed_names(stray)}; "
            f"encoded: {listed_names(targets)}"
        )
    if not targets:
        raise InvalidInputError(
            f"no tensor to encode: none has >= 2 dims and >= {settings.min_elements} elements; "
            "lower min_elements or name tensors with encode"
        )
    return targets


def resolve_device(name: str | None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise InvalidInputError(f"unknown device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' asked for but no CUDA device is available")
    return device


def compress(
    model: nn.Module,
    data: Dataset | None,
    settings: CompressionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> CompressionResult:
    """Compress ``model`` in place with the Weightless method and return what to save.

    ``data`` drives retraining and evaluation; with ``None`` the model is compressed data-free
    (one-shot pruning, no retraining, no accuracy). ``progress`` receives ``Progress`` events and
    may raise to cancel. Same model, data and settings give a byte-identical file.
    """
    settings = settings or CompressionSettings()
    if isinstance(model, TensorModel):
        if data is not None:
            raise DataError(model.refusal())
        from weightless_core.method.streaming import compress_tensors  # it builds on this module

        return compress_tensors(model, settings, progress=progress)
    run = _Run(model, data, settings, progress)
    return run.execute()


def compress_variants(
    model: nn.Module,
    data: Dataset | None,
    variants: Sequence[CompressionSettings],
    *,
    progress: ProgressCallback | None = None,
) -> list[CompressionResult]:
    """``compress`` once per settings variant, pruning and clustering only once.

    Variants may differ in ``t``, structure, codebook fine-tuning, the retraining after each
    encoded layer and per-layer ``t``; each result equals what ``compress`` gives for it alone
    (a t sweep costs one pruning pass instead of one per point). Variants that also differ in
    ``cluster_init`` share the pruning only, and each clusters (with its retraining) on its own.
    ``model`` ends pruned and clustered; each result holds its own copy of the compressed model.
    """
    if not variants:
        raise InvalidInputError("give at least one settings variant")
    run = _Run(model, data, variants[0], progress)
    return run.execute_variants(variants)


def _frozen_dense(model: nn.Module, data: Dataset, settings: CompressionSettings) -> nn.Module:
    """A frozen copy of the dense ``model``, run on each training batch: the target on mixed
    inputs (``distill_mixup``, which needs labels to mix and inputs that can be mixed) or
    shifted ones (``augment_shift`` with ``distill``), and of
    each compressed layer's output (``distill_layers``; ``layer_distill.matchable`` says
    which)."""
    mixing = settings.distill_mixup > 0
    if mixing and not data.labelled:
        raise DataError("distill_mixup needs a data set with labels (it mixes them)")
    if mixing and not data.x_train.is_floating_point():
        raise DataError(
            f"distill_mixup mixes inputs, and this data set's are {data.x_train.dtype} "
            "(token ids cannot be mixed): set distill_mixup=0"
        )
    dense = copy.deepcopy(model).eval()
    for p in dense.parameters():
        p.requires_grad_(False)
    return dense


def _check_shiftable(data: Dataset) -> None:
    """Refuse ``augment_shift`` where it means nothing: it moves labelled images."""
    x = data.x_train
    if not data.labelled:
        raise DataError("augment_shift needs a data set with labels (it trains on moved images)")
    if x.dim() != 4 or not x.is_floating_point():
        raise DataError(
            f"augment_shift moves images (N, C, H, W) of floats, and this data set's inputs are "
            f"{tuple(x.shape[1:])} per sample, {x.dtype}: set augment_shift=0"
        )


class _Run:
    """State of one compression run. Read top to bottom it is Algorithm 1: ``_prepare``
    measures the dense model, prunes (``_prune``) and clusters (``_cluster``) with retraining;
    ``_finish`` encodes layer by layer (``_encode_all``), each layer frozen as its table decodes
    and the layers after it retrained. Progress arithmetic (``progress``), the report
    (``report_builder``), variants (``variants``) and data checks (``model_fit``) live apart."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | None,
        settings: CompressionSettings,
        progress: ProgressCallback | None,
    ):
        if isinstance(model, TensorModel):
            if data is not None:
                raise DataError(model.refusal())
            model = model.materialized()  # variants hold every tensor anyway
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.source_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        self.source_dtypes = _float32_in_place(model)  # restored in the file
        self.model = model.to(self.device)
        self.data = data
        self.params = parameters_by_name(model)
        self.targets = select_targets(self.params, settings)
        self.sizes = {n: self.params[n].numel() for n in self.targets}
        self.plans = {n: settings.plan(n, numel) for n, numel in self.sizes.items()}
        _refuse_unpruned_tables(settings, self.sizes)
        self.constraints: dict[str, Constraint] = {}
        self.encoded: dict[str, EncodedLayer | DeepCompressedLayer | ContextCodedLayer] = {}
        self.layer_accuracy: dict[str, float | None] = {}
        self.accuracy: dict[str, float | None] = {}
        self.seconds: dict[str, float] = {}
        self.notes = tied_notes(model, self.params, self.targets)  # what the run changed
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.recluster = settings.later_layers == "recluster"
        self.first_centroids: dict[str, np.ndarray] = {}  # of layers released to train freely
        self.first_counts: dict[str, np.ndarray] = {}  # their codes' sizes then ("counts")
        self.weightless = settings.method == "weightless"
        self.baseline: dict[str, DeepCompressedLayer] = {}
        self.bounds: dict[str, float] = {}  # sparse-index bound (bits) of each clustered layer
        self.context_sizes: dict[str, int] = {}  # the context coder's bytes of each, where it fits
        # what the baseline context-coded, by layer: a digest of (weight, codebook, codes) and the
        # layer, so storing the same clustered weights later does not code them twice
        self.context_coded: dict[str, tuple[bytes, ContextCodedLayer | None]] = {}
        self.fp_noise: dict[str, tuple[float, torch.Tensor]] = {}  # rate, positions
        self.baseline_state: dict[str, torch.Tensor] = {}
        self.teacher: torch.Tensor | None = None  # dense logits, for distillation with labels
        self.dense_model: nn.Module | None = None  # a frozen copy, run on training batches
        self.matched_layers: list[str] = []  # compressed tensors whose layer outputs are matched
        self.dense_out: Teacher | None = None  # dense outputs, the target without labels
        self.kinds: tuple[str, ...] = ()
        units = work_units(settings, len(self.targets), trains=data is not None)
        self.meter = ProgressMeter(progress, units)

    # -- stages ---------------------------------------------------------------------------
    def execute(self) -> CompressionResult:
        self._prepare()
        return self._finish()

    def execute_variants(self, variants: Sequence[CompressionSettings]) -> list[CompressionResult]:
        """Prune and cluster once, then encode once per variant from that same state."""
        for v in variants:
            check_variant(self.settings, v, self.sizes)
            _refuse_unpruned_tables(v, self.sizes)
        own_clusters = clusters_differ(self.settings, variants)
        self._prepare(cluster=not own_clusters)
        snapshot = Snapshot.take(self.model, self.constraints, self.accuracy, self.seconds,
                                 self.generator, self.meter.done)  # fmt: skip
        results = []
        for v in variants:
            self._restore(snapshot, v)
            if own_clusters:
                self._cluster_stage()
            result = self._finish()
            result.model = copy.deepcopy(self.model)
            results.append(result)
        return results

    def _prepare(self, *, cluster: bool = True) -> None:
        """Steps 1-3: the dense model's accuracy, then pruning and (unless not ``cluster``)
        clustering, with retraining and the Deep Compression baseline of the clustered
        weights."""
        torch.manual_seed(self.settings.seed)
        for p in self.model.parameters():
            p.requires_grad_(True)
        if self.data is not None:
            fit = check_fit(self.model, self.data, self.device, self.settings.outputs,
                            on_note=self._note)  # fmt: skip
            self.data, self.kinds = fit.data, fit.kinds
        d = self.data
        if d is not None and not d.labelled:
            dense = lambda x: outputs_of(self.model, x, device=self.device)  # noqa: E731
            test = None if d.x_test is None else dense(d.x_test)
            self.dense_out = Teacher(self.kinds, dense(d.x_train), dense(d.x_val), test)
        self._timed("evaluate", lambda: (self._evaluate("dense"), self._score_test("dense")))
        if d is not None and d.labelled and self.settings.distill > 0 and not self._moves_inputs():
            # (on mixed or shifted inputs the dense model answers each batch as it comes)
            self.teacher = logits_of(self.model, d.x_train, device=self.device)
        if d is not None and self.settings.distill_layers > 0:
            sample = d.x_train[:2].to(self.device)
            self.matched_layers = matchable(self.model, self.targets, sample)
        if d is not None and self.settings.augment_shift > 0:
            _check_shiftable(d)
        if d is not None and self._needs_dense_model():
            self.dense_model = _frozen_dense(self.model, d, self.settings)
        self._timed("prune", self._prune)
        if cluster:
            self._cluster_stage()

    def _moves_inputs(self) -> bool:
        """Whether training mixes or shifts its inputs (so no precomputed target fits them)."""
        return self.settings.distill_mixup > 0 or self.settings.augment_shift > 0

    def _needs_dense_model(self) -> bool:
        """Whether training runs the dense model on its batches: to distil on moved inputs
        (``distill_mixup`` implies ``distill``) or to match its layers."""
        s = self.settings
        return (self._moves_inputs() and s.distill > 0) or s.distill_layers > 0

    def _cluster_stage(self) -> None:
        """Step 3 (clustering, weight-sharing retraining) and the baseline of its weights."""
        self._timed("cluster", self._cluster)
        if self.settings.baseline or not self.weightless:
            self._timed("baseline", self._deep_compress_all)

    def _finish(self) -> CompressionResult:
        """Step 4: encode layer by layer (Deep Compression stops after clustering)."""
        if self.weightless:
            self._timed("encode", self._encode_all)
            self.accuracy["final"] = self.accuracy.get(f"after:{self.encode_sequence()[-1]}")
            self._score_test("final")
        else:
            self.accuracy["final"] = self.accuracy.get("clustered")
            if "test:clustered" in self.accuracy:
                self.accuracy["test:final"] = self.accuracy["test:clustered"]
        for p in self.model.parameters():
            p.requires_grad_(False)
        set_mode(self.model, False)
        result = self._result()
        self.meter.emit("done", "compression finished", metrics=_metric_dict(self.accuracy))
        return result

    def _prune(self) -> None:
        """Step 2: magnitude pruning in ``prune_steps`` steps up to each layer's sparsity, with
        ``prune_epochs`` of retraining after each (one step, no retraining, data-free)."""
        s = self.settings
        steps = s.prune_steps if self.data is not None else 1
        ramps = {n: schedule(self.plans[n].sparsity, steps) for n in self.targets}
        units = {n: self._unit_ramps(n, steps) for n in self.targets}
        regrow = s.regrowth and self.data is not None
        for step in range(steps):
            for name in self.targets:
                p = self.params[name]
                old = self.constraints.get(name)
                unit = units[name][step]  # (rows, columns) pruned whole at this step
                if regrow:  # masks follow the dense copy's magnitudes: pruned weights may return
                    keep = kept_count(p.numel(), ramps[name][step])
                    dense = p.detach().clone() if old is None else old.dense
                    grid = unit_grid(dense, *unit) if any(unit) else None
                    c = Constraint(
                        p, mask=old.mask if old else None, dense=dense, keep=keep, grid=grid
                    )
                    c.refresh()
                else:
                    prior = None if old is None else old.mask
                    if any(unit):  # whole rows and columns go first, by norm
                        grid = unit_grid(p, *unit)
                        prior = grid if prior is None else prior & grid
                    c = Constraint(p, mask=magnitude_mask(p, ramps[name][step], keep=prior))
                self.constraints[name] = c
                c.project()
            label = f"pruning step {step + 1}/{steps}"
            self.meter.emit("prune", label, metrics=self._sparsity_metrics())
            self._train("prune", s.prune_epochs, label)
        for name in self.targets:
            self.constraints[name] = self.constraints[name].settle()
        if s.fp_noise and self.weightless and self.data is not None:
            self._plan_false_positives()
        self._evaluate("pruned")
        self._score_test("pruned")

    def _unit_ramps(self, name: str, steps: int) -> list[tuple[float, float]]:
        """Shares of ``name``'s rows and columns pruned whole at each step, both gradual."""
        plan = self.plans[name]
        rows = schedule(plan.unit_sparsity, steps)
        cols = schedule(plan.column_sparsity, steps)
        return list(zip(rows, cols, strict=True))

    def _plan_false_positives(self) -> None:
        """From now on the layers likely to be stored as tables train with simulated false
        positives at their table's rate, on the positions their table will query (the live
        grid with ``liveness``). With ``hybrid``, a layer whose table would not beat the
        entropy bound of a sparse index by 10 % (so Deep Compression will likely store it)
        trains without them."""
        for name in self.targets:
            plan = self.plans[name]
            mask = self.constraints[name].mask
            assert mask is not None
            n, numel = int(mask.sum()), mask.numel()
            grid = ~mask
            live_bits = 0
            if self.settings.liveness:
                m = mask.reshape(mask.shape[0], -1)
                rows, cols = m.any(dim=1), m.any(dim=0)
                grid &= (rows[:, None] & cols[None, :]).reshape(mask.shape)
                live_bits = m.shape[0] + m.shape[1]
            table_bits = 1.02 * plan.t * n + live_bits
            index_bits = entropy_bound_bits(numel, np.array([n])) + n * plan.r
            if self.settings.hybrid and table_bits > index_bits / 1.1:
                continue
            self.fp_noise[name] = (2.0 ** (plan.r - plan.t), grid)
            self.constraints[name] = self._noisy(name, self.constraints[name])

    def _noisy(self, name: str, c: Constraint) -> Constraint:
        """``c`` with the layer's simulated false positives, if it trains with them."""
        if name in self.fp_noise and name not in self.encoded:
            c.fp_rate, c.fp_grid = self.fp_noise[name]
        return c

    def _cluster(self) -> None:
        """Step 3: k-means of each layer's surviving weights into 2^r centroids, then
        weight-sharing retraining."""
        for name in self.targets:
            self._share(name)
        self.meter.emit("cluster", "weights clustered")
        self._train("cluster", self.settings.cluster_epochs, "weight-sharing retraining")
        self._evaluate("clustered")
        self._score_test("clustered")

    def _share(self, name: str) -> None:
        """Cluster the layer's surviving weights; from now on it trains by weight sharing."""
        c = self.constraints[name]
        k = 1 << self.plans[name].r
        values = self.params[name].detach()[c.mask].cpu().numpy()
        how = self.settings.recluster_from
        start = self.first_centroids.get(name) if how in ("previous", "used") else None
        if name in self.first_counts and how == "counts":  # each code as many as it had
            centroids, codes = cluster_to_counts(
                values, self.first_counts[name], self.first_centroids[name]
            )
        else:
            centroids, codes = kmeans_1d(
                values, k if start is None else start.size, seed=self.settings.seed,
                init=self.settings.cluster_init, start=start,
            )  # fmt: skip
            if name in self.first_counts:  # "capped": in no more bytes than the first
                centroids, codes = self._within_first_bytes(name, values, centroids, codes)
        if centroids.size < k:  # the codes the first clustering left unused stay unused
            centroids = np.concatenate([centroids, np.full(k - centroids.size, centroids[-1])])
        full = torch.zeros(c.mask.shape, dtype=torch.uint8)  # r <= 8: one byte per position
        full[c.mask.cpu()] = torch.from_numpy(codes.astype(np.uint8))
        self.constraints[name] = self._noisy(
            name,
            Constraint(
                c.param,
                mask=c.mask,
                codes=full.to(self.device),
                centroids=torch.from_numpy(centroids).to(self.device).requires_grad_(True),
            ),
        )
        self.constraints[name].project()

    def _deep_compress_all(self) -> None:
        """Deep Compression of the clustered weights: the baseline, or the run's output."""
        for name in self.targets:
            c = self.constraints[name]
            codes = c.codes.cpu().numpy()
            self.baseline[name] = deep_compress_best(
                self.params[name].detach(),
                codebook=c.centroids.detach().cpu().numpy(),
                codes=codes,
                r=self.plans[name].r,
            )
            mask = c.mask.cpu().numpy()
            counts = np.bincount(codes[mask], minlength=1 << self.plans[name].r)
            self.bounds[name] = sparse_index_bound_bits(mask, counts)
            weight = self.params[name].detach().cpu().numpy()
            centroids = c.centroids.detach().cpu().numpy()
            coded = context_code(weight, codebook=centroids, codes=codes, r=self.plans[name].r)
            self.context_coded[name] = (_digest(weight, centroids, codes), coded)
            if coded is not None:
                self.context_sizes[name] = coded.paper_nbytes
            if not self.weightless:
                self.meter.advance()
                layer = self.baseline[name]
                self.meter.emit(
                    "encode",
                    f"stored {name} as Deep Compression: {layer.nnz} weights, {layer.nbytes} bytes",
                    layer=name,
                    metrics={"bytes": float(layer.nbytes)},
                )
        self.baseline_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if self.weightless:  # the encoded run goes on changing the weights in place
            self.baseline_state = {k: v.clone() for k, v in self.baseline_state.items()}

    def encode_sequence(self) -> list[str]:
        """The targets in the order they are encoded (``settings.encode_order``)."""
        if self.settings.encode_order == "size":  # stable: equal sizes keep definition order
            return sorted(self.targets, key=lambda n: -self.params[n].numel())
        return list(self.targets)

    def _encode_all(self) -> None:
        """Step 4, layer by layer: encode, freeze as decoded, retrain the layers after it.

        With ``recluster`` the layers after an encoded one train freely (their codes released)
        and each is clustered again before it is encoded. Under ``retrain_after_lossless=False``
        a layer stored exactly (losslessly, or as a table left with no false positive) changed
        no weight: nothing retrains and nothing is released, so the layers after it keep their
        first clustering, and cost what Deep Compression of the clustered weights costs. Layers
        of fewer than ``shared_below`` elements are never released: they keep their codes and
        train only their centroids (weight sharing), as all do under ``later_layers="shared"``."""
        order = self.encode_sequence()
        released: set[str] = set()
        kept: set[str] = set()  # too small to release (``shared_below``): weight sharing only
        for step, name in enumerate(order):
            if name in released:
                self._share(name)
                label = f"re-clustering {name} before encoding it"
                self._train("cluster", self.settings.cluster_epochs, label, layer=name)
            elif self.recluster and step > 0:
                why = f"no re-clustering of {name}: " + (
                    "it kept its clustering (shared_below)"
                    if name in kept
                    else "no weight before it changed"
                )
                self._skip_epochs("cluster", self.settings.cluster_epochs, name, why)
            self._encode_one(self.targets.index(name), name)
            exact = self._exact(name) and not self.settings.retrain_after_lossless
            if self.recluster and not exact:  # later layers absorb the errors with all weights
                for later in order[step + 1 :]:
                    if self.sizes[later] < self.settings.shared_below:
                        kept.add(later)  # keeps its codes; its centroids go on training
                        continue
                    c = self.constraints[later]
                    if c.centroids is not None:  # still its first clustering
                        self.first_centroids[later] = self._first_start(c)
                        if self.settings.recluster_from in ("counts", "capped"):
                            self.first_counts[later] = self._code_counts(later, c)
                    self.constraints[later] = self._noisy(later, Constraint(c.param, mask=c.mask))
                    released.add(later)
            if exact:
                why = f"no retraining after {name}: stored exactly, no weight changed"
                self._skip_epochs("retrain", self.settings.retrain_epochs, name, why)
            else:
                after = f"retraining the layers after {name}"
                self._train("retrain", self.settings.retrain_epochs, after, layer=name)
            acc = self._evaluate(f"after:{name}")
            self.layer_accuracy[name] = acc

    def _first_start(self, c: Constraint) -> np.ndarray:
        """Where a released layer's second k-means will start (``recluster_from``): its
        centroids, or with ``"used"`` only those its codes used."""
        centroids = c.centroids.detach().cpu().numpy()
        if self.settings.recluster_from != "used":
            return centroids
        assert c.codes is not None
        return centroids[torch.unique(c.codes[c.mask]).cpu().numpy()]

    def _within_first_bytes(
        self, name: str, values: np.ndarray, centroids: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``recluster_from="capped"``: k-means's clustering of a released layer if Deep
        Compression stores it in no more bits than the layer's first clustering (the baseline's
        bytes), else whichever of two that do is nearer the weights (least squared error): the
        first clustering's code counts, or entropy-constrained k-means from k-means's centroids
        at a rate weight near the least that fits (``capped_kmeans``). Positions are the
        unchanged mask's, so only the codes' histogram moves the bits."""
        mask = self.constraints[name].mask
        assert mask is not None
        positions = np.flatnonzero(mask.cpu().numpy())
        k = 1 << self.plans[name].r
        counts = self.first_counts[name]
        budget = deep_compression_bits(positions, np.repeat(np.arange(k), counts), k)

        def fits(trial: np.ndarray) -> bool:
            return deep_compression_bits(positions, trial, k) <= budget

        if fits(codes):
            return centroids, codes
        options = [cluster_to_counts(values, counts, self.first_centroids[name])]
        capped = capped_kmeans(values, centroids, fits)
        if capped is not None:
            options.append(capped)
        return min(options, key=lambda option: squared_error(values, *option))

    def _code_counts(self, name: str, c: Constraint) -> np.ndarray:
        """How many of ``name``'s kept weights each of its codes holds."""
        assert c.codes is not None and c.mask is not None
        k = 1 << self.plans[name].r
        return np.bincount(c.codes[c.mask].cpu().numpy(), minlength=k)

    def _exact(self, name: str) -> bool:
        """Whether ``name`` decodes to its clustered weights exactly: stored as Deep Compression
        or context-coded, or as a table whose false positives were all vetoed (or had none)."""
        stored = self.encoded[name]
        return isinstance(stored, fileformat.SPARSE_LAYERS) or stored.false_positives == 0

    def _skip_epochs(self, stage: str, epochs: int, name: str, message: str) -> None:
        """Count ``epochs`` of a stage that has nothing to do as done, unrun."""
        if self.data is None or epochs <= 0:
            return
        for _ in range(epochs):
            self.meter.advance()
        self.meter.emit(stage, message, layer=name)

    def _encode_one(self, index: int, name: str) -> None:
        plan = self.plans[name]
        c = self.constraints[name]
        p = self.params[name]
        # nothing pruned: no table can hold it (``_refuse_unpruned_tables``: hybrid runs only)
        enc = None if bool(c.mask.all()) else self._best_table(name, index)
        stored: EncodedLayer | DeepCompressedLayer | ContextCodedLayer | None = enc
        if enc is not None:
            message = (
                f"encoded {name}: {enc.nnz} weights in {enc.structure.num_cells} cells, "
                f"{enc.false_positives} false positives"
            )
        if enc is None or self.settings.hybrid:
            codebook = c.centroids.detach().cpu().numpy() if enc is None else enc.codebook
            sparse = self._sparse(name, p.detach(), codebook, c.codes.cpu().numpy(), plan.r)
            if enc is None or sparse.paper_nbytes < enc.paper_nbytes:  # the count ratios use
                stored = sparse
                why = (
                    "unpruned, so no table"
                    if enc is None
                    else f"smaller than its table's {enc.paper_nbytes}"
                )
                how = (
                    "context-coded" if isinstance(sparse, ContextCodedLayer) else "Deep Compression"
                )
                message = f"stored {name} as {how}: {sparse.paper_nbytes} bytes, {why}"
        assert stored is not None
        if stored is enc:  # the table's reading of every position, false positives included
            codes_np, valid = enc.read_codes()
            codes = torch.from_numpy(codes_np).to(self.device)
            mask = torch.from_numpy(valid).to(self.device)
        else:  # stored as clustered: its mask and codes stay as they are
            codes, mask = c.codes, c.mask
        finetune = self.settings.finetune_codebooks
        centroids = torch.from_numpy(stored.codebook.copy()).to(self.device)
        self.constraints[name] = Constraint(
            p, mask=mask, codes=codes, centroids=centroids.requires_grad_(finetune),
            frozen=not finetune,
        )  # fmt: skip
        self.constraints[name].project()
        self.encoded[name] = stored
        self.meter.advance()
        fps = enc.false_positives if enc is not None and stored is enc else 0
        self.meter.emit(
            "encode", message, layer=name,
            metrics={"false_positives": float(fps), "bytes": float(stored.nbytes)},
        )  # fmt: skip

    def _sparse(
        self, name: str, weight: torch.Tensor, codebook: np.ndarray, codes: np.ndarray, r: int
    ) -> DeepCompressedLayer | ContextCodedLayer:
        """The clustered weights stored exactly: Deep Compression-best, or with
        ``context_coding`` the context coder where that is smaller (ties: Deep Compression)."""
        dc = deep_compress_best(weight, codebook=codebook, codes=codes, r=r)
        if not self.settings.context_coding:
            return dc
        w = weight.cpu().numpy()
        digest, cc = self.context_coded.get(name, (b"", None))
        if digest != _digest(w, codebook, codes):  # else: the baseline coded these weights
            cc = context_code(w, codebook=codebook, codes=codes, r=r)
        return cc if cc is not None and cc.paper_nbytes < dc.paper_nbytes else dc

    def _best_table(self, name: str, index: int) -> EncodedLayer:
        """The layer's table; with ``seed_candidates`` > 1, of that many seeds the one whose
        false positives cost the least training loss, the smallest of equal ones (the table is
        fixed once chosen, so this is the only point where its errors land can be picked)."""
        plan = self.plans[name]
        c = self.constraints[name]
        first = derive_seed(self.settings.seed, index + 1)
        seeds = [first] + [derive_seed(first, k) for k in range(1, self.settings.seed_candidates)]
        veto = self.settings.veto
        weighed = veto > 0 and self.data is not None
        path = weighed and self.settings.veto_rank == "path"
        harm = self._harm(name) if weighed and not path else None
        cost = self._path_cost(name) if path else None
        best: tuple[float, EncodedLayer] | None = None
        for seed in seeds:
            enc = encode_layer(
                self.params[name].detach(),
                r=plan.r,
                t=plan.t,
                seed=seed,
                codebook=c.centroids.detach().cpu().numpy(),
                codes=c.codes.cpu().numpy(),
                structure=plan.structure,
                liveness=self.settings.liveness,
                veto_share=veto,
                veto_harm=harm,
                veto_cost=cost,
            )
            if len(seeds) == 1 or self.data is None:
                return enc
            loss = self._loss_with(name, enc)  # equal losses (no false positive left): fewer bytes
            if best is None or (loss, enc.paper_nbytes) < (best[0], best[1].paper_nbytes):
                best = (loss, enc)
        assert best is not None
        return best[1]

    def _sample(self, batch: int) -> list[torch.Tensor]:
        """A fixed sample of up to 4,096 training examples, as index batches of ``batch``."""
        d = self.data
        assert d is not None
        n = min(4096, d.x_train.shape[0])
        idx = torch.randperm(d.x_train.shape[0], generator=torch.Generator().manual_seed(0))[:n]
        return list(idx.split(batch))

    def _batch_loss(self, part: torch.Tensor) -> torch.Tensor:
        """Summed loss of the examples ``part``: cross-entropy, or without labels the distance
        to the dense outputs."""
        d = self.data
        assert d is not None
        out = self.model(d.x_train[part].to(self.device))
        if self.dense_out is not None:
            target = self.dense_out.batch(part, self.device)
            return distill_loss(output_tensors(out), target, self.kinds) * len(part)
        y = d.y_train[part].to(self.device)
        return nn.functional.cross_entropy(out, y, reduction="sum")

    @torch.no_grad()
    def _loss_with(self, name: str, enc: EncodedLayer) -> float:
        """Training loss on the fixed sample with ``name``'s weights replaced by what ``enc``
        decodes; the weights are put back."""
        p = self.params[name]
        saved = p.detach().clone()
        p.copy_(torch.from_numpy(enc.decode()).to(p.device, p.dtype))
        set_mode(self.model, False)
        parts = self._sample(1024)
        total = sum(float(self._batch_loss(part)) for part in parts)
        p.copy_(saved)
        return total / sum(len(part) for part in parts)

    def _harm(self, name: str) -> np.ndarray:
        """What a false positive costs at each position of ``name``, per unit of its value
        squared: the squared gradient of the training loss there, summed over batches of 256
        of the fixed sample (a diagonal Fisher estimate; the veto weighs it by the value)."""
        p = self.params[name]
        set_mode(self.model, False)
        total = torch.zeros_like(p, dtype=torch.float64)
        for part in self._sample(256):
            (grad,) = torch.autograd.grad(self._batch_loss(part) / len(part), [p])
            total += grad.double().square()
        return total.cpu().numpy()

    def _gradient(self, name: str) -> torch.Tensor:
        """The mean training-loss gradient of ``name`` over the fixed sample (float64)."""
        p = self.params[name]
        set_mode(self.model, False)
        parts = self._sample(1024)
        total = torch.zeros_like(p, dtype=torch.float64)
        for part in parts:
            (grad,) = torch.autograd.grad(self._batch_loss(part), [p])
            total += grad.double()
        return total / sum(len(part) for part in parts)

    def _path_cost(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """``veto_rank="path"``: a function from ``name``'s weight as a table decodes it to
        each position's share of the loss the false positives add, ``(decoded - clustered)``
        times the gradient averaged along the straight path between them. Simpson's rule on
        three points (the clustered end computed once per layer) is exact for a cubic loss, so
        the false positives' interactions are in it, and the shares sum to the loss they add."""
        p = self.params[name]
        clean = p.detach().clone()
        start = self._gradient(name)

        def cost(decoded: np.ndarray) -> np.ndarray:
            step = torch.from_numpy(decoded).to(p.device, p.dtype) - clean
            mean = start.clone()
            try:
                for weight, alpha in ((4.0, 0.5), (1.0, 1.0)):
                    with torch.no_grad():
                        p.copy_(clean + alpha * step)
                    mean += weight * self._gradient(name)
            finally:
                with torch.no_grad():
                    p.copy_(clean)
            return (step.double() * mean / 6.0).cpu().numpy()

        return cost

    # -- helpers --------------------------------------------------------------------------
    def _note(self, note: str) -> None:
        """Something the run changed in the user's input: in the report, and said now."""
        self.notes.append(note)
        self.meter.emit("evaluate", note)

    def _train(self, stage: str, epochs: int, label: str, *, layer: str | None = None) -> None:
        if self.data is None or epochs <= 0:
            return
        on_epoch, on_batch = self.meter.epochs(stage, label, epochs, layer=layer)
        train_epochs(
            self.model,
            self.constraints,
            self.data,
            epochs=epochs,
            lr=self.settings.lr,
            batch_size=self.settings.batch_size,
            generator=self.generator,
            device=self.device,
            on_epoch=on_epoch,
            on_batch=on_batch,
            schedule=self.settings.lr_schedule,
            teacher_logits=self.teacher,
            distill=self.settings.distill,
            teacher=self.dense_out,
            mixup=self.settings.distill_mixup if self.dense_model is not None else 0.0,
            shift=self.settings.augment_shift,
            dense_model=self.dense_model,
            layer_distill=self.settings.distill_layers,
            layer_names=self.matched_layers,
        )

    def _evaluate(self, label: str) -> float | None:
        if self.data is None:
            self.accuracy[label] = None
            return None
        d = self.data
        if self.dense_out is not None:
            acc = self.dense_out.score(self.model, d.x_val, "val", device=self.device)
        else:
            acc = accuracy(self.model, d.x_val, d.y_val, device=self.device)
        self.accuracy[label] = acc
        self.meter.emit(
            "evaluate", f"{self.metric} ({label}): {acc:.2f}%", metrics={"accuracy": acc}
        )
        return acc

    @property
    def metric(self) -> str:
        """What ``accuracy`` holds: ``accuracy``, or ``agreement``/``fidelity`` without labels."""
        return "accuracy" if self.dense_out is None else self.dense_out.metric

    def _score_test(self, label: str) -> None:
        """Accuracy on the test split, if the data has one, as ``test:<label>``: only ever
        recorded, never read by any choice (those use the validation split)."""
        d = self.data
        if d is None or d.x_test is None:
            return
        if self.dense_out is not None:
            acc = self.dense_out.score(self.model, d.x_test, "test", device=self.device)
        else:
            acc = accuracy(self.model, d.x_test, d.y_test, device=self.device)
        self.accuracy[f"test:{label}"] = acc

    def _timed(self, key: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        self.seconds[key] = time.perf_counter() - start

    def _sparsity_metrics(self) -> dict[str, float]:
        return {f"kept:{n}": float(c.mask.float().mean()) for n, c in self.constraints.items()}

    # -- what the run hands back ----------------------------------------------------------
    def _result(self) -> CompressionResult:
        for name, enc in self.encoded.items():  # fine-tuned centroids go into the file
            trained = self.constraints[name].centroids.detach().cpu().numpy().astype(np.float32)
            if not np.array_equal(trained, enc.codebook):
                self.encoded[name] = dataclasses.replace(enc, codebook=trained)
        run = self._record()
        base_entries = None
        if self.weightless:
            # Copies: on CPU .cpu() aliases the parameter, which a later variant overwrites.
            state = {
                k: v if k in self.encoded else v.detach().cpu().clone()
                for k, v in self.model.state_dict().items()
            }
            entries = self._entries(state, self.encoded)
            baseline = None
            if self.settings.baseline:  # off: no Deep Compression ran, so no baseline report
                base_entries = self._entries(self.baseline_state, self.baseline)
                baseline = build_report(run, "deep-compression", base_entries)
            report = build_report(run, "weightless", entries, baseline=baseline)
        else:
            entries = self._entries(self.baseline_state, self.baseline)
            report = build_report(run, "deep-compression", entries)
        metadata = file_metadata(run, self.settings.method)
        return CompressionResult(self.model, entries, metadata, report, base_entries)

    def _record(self) -> RunRecord:
        return RunRecord(
            settings=self.settings,
            device=str(self.device),
            metric=self.metric,
            accuracy=self.accuracy,
            seconds=self.seconds,
            notes=self.notes,
            targets=self.targets,
            source_bytes=self.source_bytes,
            source_dtypes=self.source_dtypes,
            bounds=self.bounds,
            context_sizes=self.context_sizes,
            stored=self.encoded,
            layer_accuracy=self.layer_accuracy,
        )

    def _entries(
        self, state: dict[str, torch.Tensor], encoded: Mapping[str, fileformat.Entry]
    ) -> dict[str, fileformat.Entry]:
        missing = set(encoded) - set(state)
        if missing:  # a parameter not in state_dict would be silently dropped
            raise InvalidInputError(f"encoded tensors {sorted(missing)} are not in the state_dict")
        entries: dict[str, fileformat.Entry] = {}
        for name, tensor in state.items():
            entry = encoded.get(name, tensor)
            dtype = self.source_dtypes.get(name)
            if dtype is not None and isinstance(entry, torch.Tensor):
                entry = entry.to(dtype)  # stored plainly in the input's own dtype
            entries[name] = entry
        return entries

    # -- compress_variants ------------------------------------------------------------------
    def _restore(self, snapshot: Snapshot, settings: CompressionSettings) -> None:
        """Back to the state after clustering, to encode with ``settings``."""
        snapshot.restore_model(self.model, self.generator)
        self.constraints = snapshot.fresh_constraints()
        self.accuracy = dict(snapshot.accuracy)
        self.seconds = dict(snapshot.seconds)
        self.meter.done = snapshot.units_done
        self.settings = settings
        self.plans = {n: settings.plan(n, numel) for n, numel in self.sizes.items()}
        self.recluster = settings.later_layers == "recluster"
        self.first_centroids = {}
        self.first_counts = {}
        self.encoded = {}
        self.layer_accuracy = {}


def _digest(*arrays: np.ndarray) -> bytes:
    """A fingerprint of ``arrays`` (dtype, shape and bytes each), to tell equal inputs apart."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.digest()


def _refuse_unpruned_tables(settings: CompressionSettings, sizes: Mapping[str, int]) -> None:
    """Refuse, before any training, a run that must store a layer it never prunes as a table:
    a table holds a sparse layer's non-zeros, and a layer that keeps every weight has none to
    leave out. With ``hybrid`` such a layer is stored as Deep Compression instead. ``sizes``:
    the encoded layers' element counts, by name."""
    if settings.method != "weightless" or settings.hybrid:
        return
    for name, numel in sizes.items():
        plan = settings.plan(name, numel)
        units = max(plan.unit_sparsity, plan.column_sparsity)
        if kept_count(numel, plan.sparsity) == numel and units == 0:
            raise InvalidInputError(
                f"layer {name!r} keeps all {numel} of its weights (sparsity {plan.sparsity:g}), "
                "and a table stores only a pruned layer: raise its sparsity, or set "
                "hybrid=true to store it as Deep Compression"
            )


def _float32_in_place(model: nn.Module) -> dict[str, torch.dtype]:
    """The floating tensors of ``model`` that are not float32, by name, with their dtypes; the
    model is then made float32 in place, as pruning, clustering and training work in float32
    (bfloat16 k-means and masks would not reproduce across devices)."""
    dtypes = {
        name: t.dtype
        for name, t in model.state_dict().items()
        if t.is_floating_point() and t.dtype != torch.float32
    }
    if dtypes:
        model.float()
    return dtypes


def _metric_dict(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None}
