"""The settings a client may send with a job, validated at the API and turned into core settings.

One pydantic model serves both sides: the API validates requests with it (422 per bad field) and
stores ``model_dump()``; the worker re-validates that JSON and calls ``to_core()``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from app.limits import MAX_LAYER_NAME, MAX_LAYERS, LayerName, check_names
from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.config.presets import settings_for
from weightless_core.config.setting_schema import (
    BY_NAME,
    SEARCH_SECONDS,
    Setting,
    layer_settings,
    user_settings,
)
from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.errors import InvalidInputError

# Strict: the schema says integer / number / boolean, so ``"seed": false`` or ``"t": "9"`` is a
# 422 rather than silently becoming 0 or 9 (a number field still takes 1 as well as 1.0).
_STRICT = ConfigDict(extra="forbid", strict=True)
Structure = Literal[BY_NAME["structure"].choices]  # type: ignore[valid-type]


def api_field(setting: Setting) -> tuple[Any, Any]:
    """A pydantic field for ``setting``: optional (``None`` leaves the preset's value), with its
    declared range (the service's cap where tighter) or choices."""
    kind: Any = Literal[setting.choices] if setting.choices else setting.type  # type: ignore[valid-type]
    bounds: dict[str, Any] = {}
    if setting.lo is not None:
        bounds["gt" if setting.lo_open else "ge"] = setting.type(setting.lo)
    hi = setting.hi if setting.service_hi is None else setting.service_hi
    if hi is not None:
        bounds["lt" if setting.hi_open else "le"] = setting.type(hi)
    return kind | None, Field(default=None, description=setting.help, **bounds)


LayerSettings: type[BaseModel] = create_model(
    "LayerSettings",
    __config__=_STRICT,
    __doc__="Values for one layer that replace the job's (``None`` keeps the job's value).",
    **{s.name: api_field(s) for s in layer_settings()},
)


class _JobSettingsBase(BaseModel):
    """The fields that are not settings of the schema, and the conversion to core settings."""

    model_config = _STRICT

    preset: Literal[PRESETS] = Field(default="default", description="named starting values")  # type: ignore[valid-type]
    layers: dict[str, LayerSettings] = Field(  # type: ignore[valid-type]
        default_factory=dict, max_length=MAX_LAYERS, description="values per layer name"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        try:
            self.to_core()
        except InvalidInputError as e:
            raise ValueError(str(e)) from None
        return self

    @property
    def search_budget(self) -> float:
        """Seconds the accuracy-budget search may take (the library's default when not given)."""
        seconds = getattr(self, "search_seconds")  # noqa: B009 (a field of the built model)
        return SEARCH_SECONDS if seconds is None else float(seconds)

    def to_core(self, *, device: str | None = None) -> CompressionSettings:
        """The preset's settings with every value given here on top (``presets.settings_for``:
        a global value also wins over the preset's per-size values of it)."""
        given = {s.name: getattr(self, s.name) for s in user_settings() if s.scope == "user"}
        layers = {
            name: LayerOverride(**o.model_dump(exclude_none=True))
            for name, o in self.layers.items()
        }
        return settings_for(self.preset, device=device, layers=layers, **given)


# The preset, per-layer values and every user setting of ``weightless_core.config.setting_schema``;
# the search settings (max_accuracy_drop, search_seconds) are read by the worker, not by to_core.
JobSettings: type[_JobSettingsBase] = create_model(
    "JobSettings",
    __base__=_JobSettingsBase,
    __doc__="Compression settings of a job; ``None`` fields take the preset's (or library's) "
    "value.",
    **{s.name: api_field(s) for s in user_settings()},
)


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
