"""Every compression setting, declared once: name, type, range or choices, default, help.

``CompressionSettings`` validates with it, the API's ``JobSettings`` and both command lines'
options are built from it, and ``docs/settings.md`` is written from it
(``weightless_core.config.settings_doc``); tests/core/test_setting_schema.py fails when any of them
drifts. Adding a setting means one ``Setting`` here and one field on ``CompressionSettings``.

Light on purpose (standard library only): the API process validates settings with it and must not
load torch, numba or the retrieval kernels. So the structure names and the bit limits live here,
and a test keeps them equal to ``weightless_core.retrieval.STRUCTURES`` and ``bitpack.MAX_T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from weightless_core.errors import InvalidInputError

METHODS = ("weightless", "deep-compression")
WEIGHTLESS_ONLY = ("weightless",)
STRUCTURE_NAMES = ("bloomier", "fuse3", "fuse4", "ribbon")  # retrieval.STRUCTURES, in order
AUTO = "auto"  # the smallest structure per layer
CLUSTER_INITS = ("linear", "sign")  # where k-means starts (method.cluster)
RECLUSTER_STARTS = ("scratch", "previous", "used", "counts", "capped")  # clustering again
MAX_R = 8  # bits per cluster code the file format holds
MAX_T = 32  # bits per table cell the file format holds
SEARCH_SECONDS = 600.0  # default time budget of the accuracy-budget search
MAX_SEARCH_SECONDS = 7 * 24 * 3600.0

Scope = Literal["user", "library", "search"]


@dataclass(frozen=True)
class Setting:
    """One setting.

    ``scope``: ``"user"`` settings are offered by the API and both command lines; ``"library"``
    ones only by ``CompressionSettings``; ``"search"`` ones steer the accuracy-budget search and
    are not ``CompressionSettings`` fields. ``per_layer`` settings may also be given per layer
    (``LayerOverride``, ``--layer NAME:key=value``). ``service_hi`` is the service's tighter cap
    (a shared worker's memory); ``rule`` states a range that depends on another setting.
    ``default`` ``None`` means unset: ``unset`` says what that does ("off" unless it says).
    """

    name: str
    type: type
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    methods: tuple[str, ...] = METHODS
    per_layer: bool = False
    scope: Scope = "user"
    label: str = ""
    rule: str = ""
    service_hi: float | None = None
    unset: str = "off"

    @property
    def option(self) -> str:
        """The command-line option: ``--prune-steps``."""
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """The allowed values in words, for help, docs and error messages."""
        if self.choices:
            return ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        if self.rule:
            return self.rule
        if self.type is int:
            if self.hi is None or self.hi >= 1 << 31:  # a bound nobody meets: not worth printing
                return f">= {_num(self.lo)}"
            return f"{_num(self.lo)}..{_num(self.hi)}"
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{left}{_num(self.lo)}, {_num(self.hi)}{right}"

    def check(self, value: object) -> None:
        """Raise ``InvalidInputError`` naming this setting unless ``value`` is allowed."""
        named = f"{self.name} ({self.label})" if self.label else self.name
        if value is None and self.default is None:
            return
        if self.choices:
            if value not in self.choices:
                raise InvalidInputError(
                    f"unknown {self.name} {value!r}: {self.name} must be one of {self.choices}"
                )
        elif self.type is bool:
            if not isinstance(value, bool):
                raise InvalidInputError(f"{self.name} must be true or false, got {value!r}")
        elif self.type is int:
            if not (isinstance(value, int) and not isinstance(value, bool) and self._within(value)):
                what = f"satisfy {self.rule}" if self.rule else f"be an integer in {self._span()}"
                raise InvalidInputError(f"{named} must {what}, got {value!r}")
        elif not (
            isinstance(value, int | float) and not isinstance(value, bool) and self._within(value)
        ):
            raise InvalidInputError(f"{named} must be in {self.range_text()}, got {value!r}")

    def _within(self, value: float) -> bool:
        lo_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        hi_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return lo_ok and hi_ok

    def _span(self) -> str:
        return f"[{_num(self.lo)}, {_num(self.hi)}]"


def _num(x: float | None) -> str:
    if x is None:
        return "any"
    return str(int(x)) if float(x).is_integer() else str(x)


_s = Setting  # short, for the table below


_FRACTION = {"lo": 0, "hi": 1, "hi_open": True}
_EPOCHS = {"type": int, "default": 1, "lo": 0, "hi": 1000}
_W = {"methods": WEIGHTLESS_ONLY}

SETTINGS: tuple[Setting, ...] = (
    _s("method", str, "weightless", "weightless, or deep-compression (the baseline: CSR+Huffman)",
       choices=METHODS),
    _s("sparsity", float, 0.92, "fraction of each encoded layer's weights pruned",
       per_layer=True, label="fraction of weights pruned", **_FRACTION),
    _s("r", int, 4, "bits per cluster code (2**r clusters)", lo=1, hi=MAX_R, per_layer=True,
       label="bits per cluster code"),
    _s("t", int, 10, "bits per table cell; each extra bit halves the false positives",
       lo=2, hi=MAX_T, per_layer=True, label="bits per cell", rule=f"r < t <= {MAX_T}", **_W),
    _s("structure", str, "bloomier",
       "retrieval structure: bloomier (1.23 cells/key), fuse3 (~1.13), fuse4 (~1.08, large "
       "layers), ribbon (~1.01-1.03) or auto (the smallest per layer)",
       choices=(*STRUCTURE_NAMES, AUTO), per_layer=True, **_W),
    _s("unit_sparsity", float, 0.0,
       "fraction of each encoded layer's rows (output units), and of its columns unless "
       "column_sparsity is given, pruned whole",
       per_layer=True, label="fraction of rows and columns pruned", **_FRACTION),
    _s("column_sparsity", float, None,
       "fraction of each encoded layer's columns (inputs) pruned whole, where it differs from "
       "its rows'", per_layer=True, label="fraction of columns pruned",
       unset="as unit_sparsity", **_FRACTION),
    _s("later_layers", str, "recluster",
       "how layers not yet encoded retrain: recluster before encoding, or keep shared codebooks",
       choices=("recluster", "shared"), scope="library", **_W),
    _s("recluster_from", str, "scratch",
       "where a layer clustered again after an earlier table's errors starts k-means: scratch "
       "(as cluster_init), previous (its first clustering's centroids), used (only those "
       "that held weights: no more codes in use than it had), counts (no k-means: each "
       "code keeps as many weights as it had, so Deep Compression stores it in as many bytes) "
       "or capped (scratch, unless Deep Compression would store that in more bytes than the "
       "first clustering: then the nearer of counts and k-means with an entropy penalty)",
       choices=RECLUSTER_STARTS, scope="library", **_W),
    _s("finetune_codebooks", bool, True,
       "keep training an encoded layer's centroids after encoding it", **_W),
    _s("hybrid", bool, False,
       "store each layer as its Weightless table or as Deep Compression, whichever is smaller "
       "(a layer that keeps every weight as Deep Compression: a table holds pruned layers only)",
       **_W),
    _s("context_coding", bool, False,
       "store a layer kept exact (by hybrid, or unpruned) with the context-adaptive range coder "
       "where that is smaller than Deep Compression (files of format version 6)", **_W),
    _s("cluster_init", str, "linear",
       "where k-means starts: linear over [min, max], or sign (each sign's own range, shared "
       "by count: no centroid in the gap pruning leaves)",
       choices=CLUSTER_INITS, label="k-means start"),
    _s("regrowth", bool, False, "prune with regrowth: pruned weights keep training and may return"),
    _s("liveness", bool, False, "store live rows and columns as bitmaps; query only those", **_W),
    _s("encode_order", str, "definition",
       "definition (first layer first) or size (largest first)",
       choices=("definition", "size"), **_W),
    _s("seed_candidates", int, 1, "tables built per layer; the one costing least loss is kept",
       lo=1, hi=64, **_W),
    _s("veto", float, 0.0,
       "share of each table's false positives cancelled by a one-bit veto, costliest first",
       lo=0, hi=1, label="share of false positives vetoed", **_W),
    _s("veto_rank", str, "fisher",
       "how vetoes rank false positives: fisher (value squared x squared gradient) or path "
       "(signed share of the loss they add)",
       choices=("fisher", "path"), label="veto ranking", **_W),
    _s("fp_noise", bool, False,
       "train layers that will be tables with simulated false positives", **_W),
    _s("retrain_after_lossless", bool, True,
       "retrain (and re-cluster) after a layer stored exactly (no false positive left)", **_W),
    _s("shared_below", int, 0,
       "layers of fewer elements keep their clustering (training only their centroids) when an "
       "earlier layer's table releases the others to retrain freely and cluster again",
       lo=0, hi=1 << 62, scope="library", **_W),
    _s("distill", float, 0.0, "weight of distillation from the dense model in retraining",
       **_FRACTION),
    _s("distill_mixup", float, 0.0,
       "largest share of another input of the batch mixed into each training input, the "
       "dense model's outputs on it the distillation target (0 = off; needs distill)",
       lo=0, hi=0.5, scope="library"),
    _s("distill_layers", float, 0.0,
       "weight of layer-wise distillation: each compressed layer's output matched to the dense "
       "layer's (relative squared error; 0 = off)",
       lo=0, hi=100, scope="library"),
    _s("augment_shift", int, 0,
       "largest random shift, in pixels along each axis, of each training image (N, C, H, W) "
       "in retraining; with distill, the dense model's outputs on it the target (0 = off)",
       lo=0, hi=4, scope="library"),
    _s("lr_schedule", str, "constant", "constant, or cosine (decay within each stage)",
       choices=("constant", "cosine")),
    _s("outputs", str, "auto",
       "without labels: what the model returns, logits or values (auto: logits if 2+ columns)",
       choices=("auto", "logits", "values")),
    _s("min_elements", int, 1000, "smallest tensor that is encoded", lo=1, hi=1 << 62),
    _s("prune_steps", int, 3, "gradual pruning steps", lo=1, hi=100),
    _s("prune_epochs", help="epochs of retraining after each pruning step", **_EPOCHS),
    _s("cluster_epochs", help="epochs of retraining after clustering", **_EPOCHS),
    _s("retrain_epochs", help="epochs of retraining after each encoded layer", **_EPOCHS, **_W),
    _s("batch_size", int, 128, "training batch size", lo=1, hi=1 << 20, service_hi=65536),
    _s("lr", float, 1e-3, "learning rate (Adam)", lo=0, hi=10, lo_open=True),
    _s("seed", int, 0, "random seed (training order, clustering, table seeds)",
       lo=0, hi=(1 << 63) - 1),
    _s("baseline", bool, True,
       "also report Deep Compression of the same pruned, clustered weights",
       scope="library", **_W),
    _s("max_accuracy_drop", float, None,
       "search each layer's sparsity, r and t for the smallest file within this many accuracy "
       "points of the dense model (instead of giving them)", lo=0, hi=100, scope="search", **_W),
    _s("search_seconds", float, SEARCH_SECONDS, "time budget of the max_accuracy_drop search",
       lo=0, hi=MAX_SEARCH_SECONDS, scope="search", **_W),
)  # fmt: skip
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# The fields of CompressionSettings that are not scalar settings (declared there, not here).
COMPOUND_FIELDS = ("layers", "size_rules", "encode", "device")


def core_settings() -> tuple[Setting, ...]:
    """The scalar fields of ``CompressionSettings``, in order."""
    return tuple(s for s in SETTINGS if s.scope != "search")


def user_settings() -> tuple[Setting, ...]:
    """What the API and both command lines offer (search settings included)."""
    return tuple(s for s in SETTINGS if s.scope != "library")


def layer_settings() -> tuple[Setting, ...]:
    """What may be set per layer."""
    return tuple(s for s in SETTINGS if s.per_layer)


def validate_bits(r: int, t: int) -> None:
    """Refuse (r, t) pairs the format cannot hold, naming the fix."""
    if not (isinstance(r, int) and 1 <= r <= MAX_R):
        raise InvalidInputError(f"r (bits per cluster code) must be in 1..{MAX_R}, got {r!r}")
    if not (isinstance(t, int) and r < t <= MAX_T):
        raise InvalidInputError(
            f"t (bits per cell) must satisfy r < t <= {MAX_T}; got r={r}, t={t!r}. "
            "Each extra bit of t halves the false positives."
        )


def check_structure(structure: str) -> None:
    """Refuse a structure name that is neither a retrieval structure nor ``"auto"``."""
    BY_NAME["structure"].check(structure)
