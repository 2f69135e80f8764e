"""What a compression run produced, per layer and for the whole model, as plain data.

The same report feeds the CLI table, the JSON written by ``--report`` and, later, the service.
Sizes follow the papers' conventions: *weights-only* compares weight tensors (>= 2 dims) as
float32 with their encoding (codebook + table + record header; ``paper_bytes`` leaves the record
header out, as both papers count); *whole-file* compares the dense state_dict with the complete
file. ``baseline`` is the Deep Compression report on the same pruned, clustered weights (its
index width chosen per layer, ``baselines.deep_compress_best``), and ``bound_bits`` of an
encoded layer is the entropy bound of any sparse-index coder on those weights
(``baselines.sparse_index_bound_bits``: over every position, or over the live rows and
columns after their bitmaps where that is smaller); ``context_bytes`` is what the context coder
(``baselines.context_coded``) stores it in, which goes below the bound where kept weights come
in runs: the figures a user compares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# What a report's ``accuracy`` figures are (``Report.metric``): top-1 accuracy with labels,
# else how closely the model reproduces its dense self (``weightless_core.method.objective``).
METRIC_NAMES = {
    "accuracy": "accuracy",
    "agreement": "top-1 agreement with the dense model",
    "fidelity": "output fidelity (100 - relative error to the dense model)",
}


@dataclass(frozen=True)
class LayerReport:
    """One tensor of the model; encoded ones carry r, t, structure, cells and false positives."""

    name: str
    shape: tuple[int, ...]
    encoded: bool
    original_bytes: int
    bytes: int
    kept: float
    r: int | None = None
    t: int | None = None
    structure: str | None = None
    cells: int | None = None
    false_positives: int | None = None
    build_attempts: int | None = None
    accuracy_after: float | None = None
    paper_bytes: int | None = None
    bound_bits: float | None = None
    context_bytes: int | None = None  # the context coder on the same clustered weights

    @property
    def bound_bytes(self) -> int | None:
        """The entropy bound in bytes with the float32 codebook any coder also stores
        (``None`` for plain rows or when no bound was computed)."""
        if self.bound_bits is None or self.r is None:
            return None
        return math.ceil(self.bound_bits / 8) + 4 * (1 << self.r)

    @property
    def nnz(self) -> int:
        """Kept weights (rounded from ``kept``, exact for encoded rows)."""
        return round(self.kept * math.prod(self.shape))

    def bits_per_kept(self, nbytes: int | None = None) -> float | None:
        """``8 * nbytes / nnz`` (default: ``payload_bytes``); None without kept weights."""
        n = self.nnz
        return None if n == 0 else 8 * (self.payload_bytes if nbytes is None else nbytes) / n

    @property
    def payload_bytes(self) -> int:
        """Bytes as the papers count them (table or streams + codebook); record bytes if plain."""
        return self.bytes if self.paper_bytes is None else self.paper_bytes

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.bytes if self.bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["ratio"] = round(self.ratio, 3)
        d["bound_bits"] = _round(self.bound_bits)
        return d


@dataclass(frozen=True)
class Report:
    """The whole run: accuracy through the stages, sizes, per-layer rows, timings, settings."""

    layers: list[LayerReport]
    accuracy: dict[str, float | None]
    original_bytes: int
    file_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    method: str = "weightless"
    baseline: Report | None = None
    notes: list[str] = field(default_factory=list)  # what the run changed for the user's input
    # What ``accuracy`` holds: "accuracy" (labels), else "agreement" or "fidelity" with the
    # dense model (``weightless_core.method.objective``), percentages all.
    metric: str = "accuracy"
    # The input's own bytes where its floating tensors were not all float32 (bf16, fp16): the
    # ratios above count float32, as the papers do; ``source_ratio`` counts what was given.
    source_bytes: int | None = None
    source_dtypes: list[str] = field(default_factory=list)

    @property
    def weight_rows(self) -> list[LayerReport]:
        return [row for row in self.layers if len(row.shape) >= 2]

    @property
    def weights_original_bytes(self) -> int:
        return sum(row.original_bytes for row in self.weight_rows)

    @property
    def weights_encoded_bytes(self) -> int:
        return sum(row.bytes for row in self.weight_rows)

    @property
    def weights_ratio(self) -> float:
        enc = self.weights_encoded_bytes
        return self.weights_original_bytes / enc if enc else float("inf")

    @property
    def weights_paper_bytes(self) -> int:
        return sum(row.payload_bytes for row in self.weight_rows)

    @property
    def weights_paper_ratio(self) -> float:
        """Weights-only ratio counted as the papers do: codebooks + tables/streams, no headers."""
        enc = self.weights_paper_bytes
        return self.weights_original_bytes / enc if enc else float("inf")

    @property
    def kept_weights(self) -> int:
        """Weights kept (stored, false positives not counted) over the encoded layers."""
        return sum(row.nnz for row in self.weight_rows if row.encoded)

    def bits_per_kept(self, nbytes: int | None) -> float | None:
        """``8 * nbytes`` over the kept weights of the encoded layers (None if none)."""
        kept = self.kept_weights
        return None if nbytes is None or not kept else 8 * nbytes / kept

    @property
    def weights_bound_bytes(self) -> int | None:
        """Weights-only bytes at the entropy bound: bound + codebook per encoded layer, plain
        weight tensors as they are; None when a layer has no bound."""
        total = 0
        for row in self.weight_rows:
            if not row.encoded:
                total += row.payload_bytes
            elif row.bound_bytes is None:
                return None
            else:
                total += row.bound_bytes
        return total

    @property
    def weights_context_bytes(self) -> int | None:
        """Weights-only bytes of the strongest sparse coder we have: each encoded layer as the
        smaller of its own bytes and the context coder's (``baselines.context_coded``); plain
        weight tensors as they are. None when no layer has a context-coder size."""
        if not any(row.context_bytes is not None for row in self.weight_rows):
            return None
        return sum(
            row.payload_bytes
            if row.context_bytes is None
            else min(row.payload_bytes, row.context_bytes)
            for row in self.weight_rows
        )

    @property
    def weights_context_ratio(self) -> float | None:
        b = self.weights_context_bytes
        return None if b is None else (self.weights_original_bytes / b if b else float("inf"))

    @property
    def weights_bound_ratio(self) -> float | None:
        b = self.weights_bound_bytes
        return None if b is None else (self.weights_original_bytes / b if b else float("inf"))

    @property
    def file_ratio(self) -> float:
        return self.original_bytes / self.file_bytes if self.file_bytes else float("inf")

    @property
    def source_ratio(self) -> float | None:
        if self.source_bytes is None:
            return None
        return self.source_bytes / self.file_bytes if self.file_bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "original_bytes": self.original_bytes,
            "file_bytes": self.file_bytes,
            "file_ratio": round(self.file_ratio, 3),
            "weights_original_bytes": self.weights_original_bytes,
            "weights_encoded_bytes": self.weights_encoded_bytes,
            "weights_ratio": round(self.weights_ratio, 3),
            "weights_paper_bytes": self.weights_paper_bytes,
            "weights_paper_ratio": round(self.weights_paper_ratio, 3),
            "weights_bound_bytes": self.weights_bound_bytes,
            "weights_bound_ratio": _round(self.weights_bound_ratio),
            "weights_context_bytes": self.weights_context_bytes,
            "weights_context_ratio": _round(self.weights_context_ratio),
            "kept_weights": self.kept_weights,
            "method": self.method,
            "layers": [row.to_dict() for row in self.layers],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "settings": self.settings,
            "device": self.device,
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "notes": list(self.notes),
            "metric": self.metric,
            "source_bytes": self.source_bytes,
            "source_ratio": _round(self.source_ratio),
            "source_dtypes": list(self.source_dtypes),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
