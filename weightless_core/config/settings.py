"""Compression settings: frozen, validated once, with per-layer overrides.

Defaults: ~92% of each encoded layer pruned (Deep Compression kept 8% of LeNet's fc layers), 16
clusters (r=4) and t=10, i.e. a false-positive rate of 1/64. The paper's MNIST figure is flat from
t=8 on, but LeNet-300-100 on Fashion-MNIST loses far more at t=8 than at t=10 (the t sweep in
BENCHMARKS.md), so the default leans to accuracy; ``layers`` sets t per layer.

Each scalar field's type, range or choices and default are declared once in
``weightless_core.config.setting_schema``; ``__post_init__`` checks them from there, and a test
keeps the field defaults here equal to the declared ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from weightless_core.config.setting_schema import BY_NAME, core_settings, validate_bits
from weightless_core.errors import InvalidInputError


@dataclass(frozen=True)
class LayerOverride:
    """Per-layer values that replace the global ones (``None`` keeps the global value)."""

    sparsity: float | None = None
    r: int | None = None
    t: int | None = None
    structure: str | None = None
    unit_sparsity: float | None = None
    column_sparsity: float | None = None


@dataclass(frozen=True)
class SizeRule:
    """Values for every encoded tensor of at least ``min_elements`` elements.

    Presets use these instead of layer names so they fit any model: the rule with the largest
    ``min_elements`` not above a tensor's size applies; explicit ``layers`` entries win over it.
    """

    min_elements: int
    sparsity: float | None = None
    r: int | None = None
    t: int | None = None
    unit_sparsity: float | None = None
    column_sparsity: float | None = None


@dataclass(frozen=True)
class LayerPlan:
    """What one encoded tensor gets: fraction pruned, code bits, cell bits, structure, and the
    fraction of its rows and of its columns pruned whole (``plan`` resolves both)."""

    sparsity: float
    r: int
    t: int
    structure: str
    unit_sparsity: float = 0.0
    column_sparsity: float = 0.0


@dataclass(frozen=True)
class CompressionSettings:
    """Everything the pipeline needs besides the model and data.

    ``encode`` names the tensors to encode; ``None`` means every tensor of >= 2 dims and
    >= ``min_elements`` elements (Linear and Conv weights). Everything else is stored plainly.
    Epoch counts are per stage: after each pruning step, after clustering, after each encoded
    layer.

    ``later_layers`` says how the layers not yet encoded retrain around an encoded one. With
    ``"recluster"`` (default) they keep their pruning masks but train all surviving weights
    freely, and each is clustered again (then ``cluster_epochs`` of weight sharing) just before
    it is encoded: the paper's alternation of simplification and encoding. ``"shared"`` keeps
    their codebooks throughout, leaving them only ``2**r`` values each to adapt with; on
    LeNet-300-100/Fashion-MNIST that ends lower (BENCHMARKS.md, pipeline section).
    ``recluster_from`` is where that second k-means starts: ``"scratch"`` (as the first,
    ``cluster_init``), ``"previous"`` (the layer's first clustering's centroids), or
    ``"used"`` (only those of them that held weights, the codebook padded with unused
    entries). After magnitude pruning a first clustering leaves some codes unused (no weight
    near zero); the second, on retrained weights, fills them (from ``"previous"`` too, as
    LeNet-5 measured), and the higher code entropy costs bytes where the layer is stored as
    Deep Compression; ``"used"`` keeps the layer to the codes it had. ``"counts"`` runs no
    k-means: the retrained weights, sorted, fill each code with as many weights as the first
    clustering gave it, so the codes' histogram, and with the unchanged mask the size of
    Deep Compression's encoding, is what the baseline's was for the layer (Deep Compression
    finds positions by non-zero values: a centroid of exactly 0.0, which no clustering of
    pruned weights is likely to give, would drop its weights from both counts).
    ``"capped"`` keeps k-means from scratch where Deep Compression stores it in no more bits
    than the first clustering, and otherwise takes the nearer to the weights of two that fit:
    ``"counts"``, or entropy-constrained k-means at a rate weight near the least that fits
    (``method.cluster.capped_kmeans``).

    ``method="deep-compression"`` runs the same pruning and clustering and then stores each layer
    as Deep Compression does (relative-gap CSR + Huffman) instead of encoding it; ``t`` and the
    retraining settings after encoding then do not apply. With ``baseline`` a Weightless run
    also reports Deep Compression on its own pruned, clustered weights (``Report.baseline``).

    ``finetune_codebooks`` keeps an encoded layer's centroids trainable after it is encoded: its
    table (which codes sit where, false positives included) is fixed, but the values those codes
    stand for still learn from the summed gradients of their positions. The paper froze them.
    ``hybrid`` stores each encoded layer the smaller of two ways, chosen when it is encoded: its
    Weightless table (false positives included) or Deep Compression's encoding of the same
    clustered weights (no false positives). Large layers that tolerate a small t go to tables,
    small or denser ones to Deep Compression; later layers retrain around what was stored.
    ``context_coding`` lets a layer stored exactly (by ``hybrid``, or unpruned) be context-coded
    instead of Deep Compression where that is smaller (``baselines.context_coded``: an adaptive
    range coder whose position models see the neighbours; format version 6).
    ``distill`` in [0, 1) mixes knowledge distillation from the dense model into every
    retraining loss (0 = labels only). ``distill_mixup`` > 0 (with ``distill`` and labelled,
    floating-point inputs) trains on inputs each mixed with another of its batch, by a share
    drawn from [0, ``distill_mixup``), against the mixed labels and the dense model's outputs
    on the mixed inputs: the compressed model matches the dense one between training samples
    as well as on them (``method.training``). ``distill_layers`` > 0 adds, with that weight,
    the relative squared error between each compressed layer's output and the dense layer's on
    the same batch (``method.layer_distill``; models whose layers are modules).
    ``augment_shift`` > 0 moves each training image (labelled ``(N, C, H, W)`` inputs) by up
    to that many pixels along each axis, a fresh offset each step; with ``distill`` the target
    is the dense model's output on the moved image. The dense model keeps the judgement of
    each image it was trained on, and the pruned one learns to keep it under small shifts.
    ``lr_schedule`` is ``"constant"`` or ``"cosine"``
    (decay to 0 within each training stage).

    ``cluster_init`` is where each layer's k-means starts (``method.cluster``): ``"linear"``
    over the surviving weights' range (Deep Compression's choice), or ``"sign"``, linearly over
    each sign's own range, so no centroid starts in the gap around zero that pruning leaves.
    ``regrowth`` prunes with regrowth: pruned weights keep training in a dense copy and the
    masks follow its magnitudes, so a weight cut too early comes back (pruning only).
    ``encode_order`` is ``"definition"`` (the paper: first layer first) or ``"size"`` (largest
    first: the layer that dominates the file is encoded while every other layer can still
    retrain around its false positives). ``liveness`` stores each table's live rows and
    columns as bitmaps and queries only that grid (``weightless_core.method.liveness``).
    ``unit_sparsity`` prunes that fraction of each encoded layer's rows (output units) and of
    its columns (inputs) whole, by L2 norm and on the same gradual schedule, before the weight
    pruning inside what is left: the live grid a table with ``liveness`` queries shrinks, and
    with it the false positives, for the same kept weights (``prune.unit_grid``).
    ``column_sparsity`` gives the columns a share of their own (``None``: as the rows). A
    layer on raw inputs loses accuracy when its input columns go, far less when its hidden rows
    do (BENCHMARKS.md, ``column_sparsity``). Where a level (global, size rule, layer) gives
    ``unit_sparsity`` and not ``column_sparsity``, its ``unit_sparsity`` sets both.
    ``seed_candidates`` builds each table with that many seeds and keeps the one whose false
    positives cost the least training loss. ``veto`` cancels that share of each table's false
    positives with a one-bit veto table (``method.veto``), those whose error costs most first:
    with ``veto_rank="fisher"`` each costs the training loss's squared gradient at its position
    times its value squared (a diagonal Fisher estimate of the loss it adds, blind to its sign);
    with ``"path"`` its share of the loss that all the table's false positives add together,
    signed: its value times the loss's gradient there averaged along the straight path from the
    clustered weights to the decoded ones (Simpson's rule, exact for a cubic loss), so a false
    positive that lowers the loss is never vetoed before one that raises it. ``fp_noise``
    trains each layer that will be a table with simulated false positives (a fresh random
    pattern at its table's rate every step) from the end of pruning until it is encoded, so the
    network is robust to its table's errors before they exist. ``retrain_after_lossless=False``
    skips the retraining after a layer stored exactly (as Deep Compression under ``hybrid``, or
    a table whose false positives were all vetoed): storing it changed no weight, so the layers
    after it keep their clustering (no re-clustering, which would cost them bits) unless an
    earlier layer's errors released them.
    ``shared_below`` keeps layers of fewer elements out of that release: they keep their codes
    and train only their centroids (``later_layers="shared"``, for them alone), so a small
    layer every feature passes through (a conv stem) is not re-clustered from scratch after
    one epoch of free training, and costs what the baseline's encoding of it costs.

    ``outputs`` says what a model returns, for a data set without labels (the model is then
    retrained to match its dense self): ``"logits"`` (class scores: KL divergence, top-1
    agreement), ``"values"`` (real-valued: MSE, relative error) or ``"auto"`` (logits where the
    last dimension has two or more entries); see ``weightless_core.method.objective``.
    """

    method: str = "weightless"
    sparsity: float = 0.92
    r: int = 4
    t: int = 10
    structure: str = "bloomier"
    later_layers: str = "recluster"
    recluster_from: str = "scratch"
    finetune_codebooks: bool = True
    hybrid: bool = False
    context_coding: bool = False
    lr_schedule: str = "constant"
    distill: float = 0.0
    distill_mixup: float = 0.0
    distill_layers: float = 0.0
    augment_shift: int = 0
    cluster_init: str = "linear"
    regrowth: bool = False
    encode_order: str = "definition"
    liveness: bool = False
    seed_candidates: int = 1
    veto: float = 0.0
    veto_rank: str = "fisher"
    fp_noise: bool = False
    retrain_after_lossless: bool = True
    shared_below: int = 0
    unit_sparsity: float = 0.0
    column_sparsity: float | None = None
    outputs: str = "auto"
    layers: Mapping[str, LayerOverride] = field(default_factory=dict)
    size_rules: tuple[SizeRule, ...] = ()
    encode: tuple[str, ...] | None = None
    min_elements: int = 1000
    prune_steps: int = 3
    prune_epochs: int = 1
    cluster_epochs: int = 1
    retrain_epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str | None = None
    baseline: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        if self.encode is not None:
            object.__setattr__(self, "encode", tuple(self.encode))
        rules = tuple(self.size_rules)
        object.__setattr__(self, "size_rules", tuple(sorted(rules, key=lambda r: r.min_elements)))
        for setting in core_settings():  # types, ranges and choices, as declared
            setting.check(getattr(self, setting.name))
        validate_bits(self.r, self.t)  # r < t
        if self.distill_mixup > 0 and self.distill == 0:
            raise InvalidInputError("distill_mixup needs distill > 0: it distils on mixed inputs")
        for rule in self.size_rules:
            if not isinstance(rule, SizeRule):
                raise InvalidInputError("size_rules must hold SizeRule values")
            try:
                BY_NAME["min_elements"].check(rule.min_elements)
            except InvalidInputError as e:
                raise InvalidInputError(f"size_rules {e}") from None
            self.plan(f"(tensors of >= {rule.min_elements} elements)", rule.min_elements)
        if len({r.min_elements for r in self.size_rules}) != len(self.size_rules):
            raise InvalidInputError("size_rules must not repeat a min_elements value")
        for name, o in self.layers.items():
            if not isinstance(o, LayerOverride):
                raise InvalidInputError(f"layers[{name!r}] must be a LayerOverride")
            self.plan(name)  # validates the merged values

    def plan(self, name: str, numel: int | None = None) -> LayerPlan:
        """The merged, validated settings for tensor ``name`` of ``numel`` elements.

        Precedence: ``layers[name]``, then the matching size rule, then the global values.
        """
        values = {
            "sparsity": self.sparsity,
            "r": self.r,
            "t": self.t,
            "structure": self.structure,
        }
        values |= _units(self)
        if numel is not None:
            rule = next((r for r in reversed(self.size_rules) if r.min_elements <= numel), None)
            if rule is not None:
                values |= _given(rule, ("sparsity", "r", "t")) | _units(rule)
        o = self.layers.get(name, LayerOverride())
        values |= _given(o, ("sparsity", "r", "t", "structure")) | _units(o)
        plan = LayerPlan(**values)
        try:
            for key in ("sparsity", "unit_sparsity", "column_sparsity", "r", "t", "structure"):
                BY_NAME[key].check(getattr(plan, key))
            validate_bits(plan.r, plan.t)
        except InvalidInputError as e:
            raise InvalidInputError(f"layer {name!r}: {e}") from None
        return plan

    def with_(self, **changes: Any) -> CompressionSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used in reports and file metadata)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "layers":
                v = {
                    k: {a: b for a, b in vars(o).items() if b is not None}
                    for k, o in sorted(v.items())
                }
            elif f.name == "size_rules":
                v = [{a: b for a, b in vars(r).items() if b is not None} for r in v]
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


def _given(level: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values among ``keys`` that ``level`` sets (not ``None``)."""
    return {k: getattr(level, k) for k in keys if getattr(level, k) is not None}


def _units(level: SizeRule | LayerOverride | CompressionSettings) -> dict[str, Any]:
    """The whole-unit shares one level sets: its ``unit_sparsity`` sets the columns' share too
    unless the same level gives ``column_sparsity``."""
    out = _given(level, ("unit_sparsity", "column_sparsity"))
    if "unit_sparsity" in out:
        out.setdefault("column_sparsity", out["unit_sparsity"])
    return out
