"""The settings a client may send with a job, validated at the API and turned into core settings.

One pydantic model serves both sides: the API validates requests with it (422 per bad field) and
stores ``model_dump()``; the worker re-validates that JSON and calls ``to_core()``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.limits import MAX_LAYER_NAME, MAX_LAYERS, LayerName, check_names
from weightless_core.errors import InvalidInputError
from weightless_core.presets import settings_for
from weightless_core.settings import CompressionSettings, LayerOverride

# Strict: the schema says integer / number / boolean, so ``"seed": false`` or ``"t": "9"`` is a
# 422 rather than silently becoming 0 or 9 (a number field still takes 1 as well as 1.0).
_STRICT = ConfigDict(extra="forbid", strict=True)
Structure = Literal["bloomier", "fuse3", "fuse4", "ribbon", "auto"]


class LayerSettings(BaseModel):
    model_config = _STRICT

    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)
    r: int | None = Field(default=None, ge=1, le=8)
    t: int | None = Field(default=None, ge=2, le=32)
    structure: Structure | None = None
    unit_sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)


class JobSettings(BaseModel):
    """Compression settings of a job; ``None`` fields take the preset's (or library's) value."""

    model_config = _STRICT

    preset: Literal["default", "fast", "paper", "max"] = "default"
    method: Literal["weightless", "deep-compression"] | None = None
    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)
    r: int | None = Field(default=None, ge=1, le=8)
    t: int | None = Field(default=None, ge=2, le=32)
    # The retrieval structure: bloomier (1.23 cells/key), fuse3/fuse4 (smaller on large layers),
    # ribbon (~1.01-1.03 cells/key) or auto (the smallest of them per layer)
    structure: Structure | None = None
    layers: dict[str, LayerSettings] = Field(default_factory=dict, max_length=MAX_LAYERS)
    min_elements: int | None = Field(default=None, ge=1)
    prune_steps: int | None = Field(default=None, ge=1, le=100)
    prune_epochs: int | None = Field(default=None, ge=0, le=1000)
    cluster_epochs: int | None = Field(default=None, ge=0, le=1000)
    retrain_epochs: int | None = Field(default=None, ge=0, le=1000)
    batch_size: int | None = Field(default=None, ge=1, le=65536)
    lr: float | None = Field(default=None, gt=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    finetune_codebooks: bool | None = None
    # Store each layer as its Weightless table or as Deep Compression, whichever is smaller.
    hybrid: bool | None = None
    # Prune with regrowth; liveness bitmaps; encode the largest layer first; tables built per
    # layer to pick from; simulated false positives in training; distillation from the dense
    # model; the learning-rate schedule.
    regrowth: bool | None = None
    fp_noise: bool | None = None
    unit_sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)
    liveness: bool | None = None
    encode_order: Literal["definition", "size"] | None = None
    seed_candidates: int | None = Field(default=None, ge=1, le=64)
    distill: float | None = Field(default=None, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine"] | None = None
    # For a data set without labels: what the model returns (logits or real values).
    outputs: Literal["auto", "logits", "values"] | None = None
    # Instead of knobs: search each layer's sparsity, r and t for the smallest file within this
    # many accuracy points (``weightless_core.budget_search``), for at most search_seconds.
    max_accuracy_drop: float | None = Field(default=None, ge=0.0, le=100.0)
    search_seconds: float | None = Field(default=None, ge=0.0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _consistent(self) -> JobSettings:
        try:
            self.to_core()
        except InvalidInputError as e:
            raise ValueError(str(e)) from None
        return self

    def to_core(self, *, device: str | None = None) -> CompressionSettings:
        """The preset's settings with every value given here on top (``presets.settings_for``:
        a global value also wins over the preset's per-size values of it)."""
        given = {
            name: getattr(self, name)
            for name in (
                "method", "finetune_codebooks", "hybrid", "sparsity", "r", "t", "structure",
                "regrowth", "liveness", "encode_order", "seed_candidates", "fp_noise", "distill",
                "lr_schedule", "unit_sparsity", "outputs",
                "min_elements", "prune_steps",
                "prune_epochs", "cluster_epochs", "retrain_epochs", "batch_size", "lr", "seed",
            )
        }  # fmt: skip
        layers = {
            name: LayerOverride(**o.model_dump(exclude_none=True))
            for name, o in self.layers.items()
        }
        return settings_for(self.preset, device=device, layers=layers, **given)


class RequestedJobSettings(JobSettings):
    """``JobSettings`` as a client sends them to the API: layer names bounded
    (``app.limits``), since they are stored with the job and returned on every poll.

    The worker reads stored settings with ``JobSettings``, so jobs stored before the limit
    still run (and fail with a short ``bad_settings`` if a name matches no layer).
    """

    layers: dict[LayerName, LayerSettings] = Field(default_factory=dict, max_length=MAX_LAYERS)

    @field_validator("layers", mode="before")
    @classmethod
    def _bounded_names(cls, layers: object) -> object:
        if isinstance(layers, dict):  # anything else gets pydantic's own type error
            check_names("layer name", layers, MAX_LAYER_NAME)
        return layers
