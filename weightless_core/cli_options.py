"""Command-line options built from the settings schema, for both ``weightless`` command lines.

``weightless compress`` and ``weightless submit`` take every user setting of
``weightless_core.config.setting_schema`` as an option (``None`` when not given, so the preset
decides), a ``--preset`` and repeatable ``--layer NAME:key=value,...`` overrides. Only the schema is
read here: a setting added there appears in both commands, with its range and default in the help.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer

from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.config.setting_schema import Setting, layer_settings, user_settings
from weightless_core.errors import InvalidInputError

F = TypeVar("F", bound=Callable[..., Any])

PRESET_HELP = f"named starting values: {', '.join(PRESETS)} (docs/presets.md)"


def default_text(setting: Setting) -> str:
    """A default as the help shows it."""
    if setting.type is bool:
        return "yes" if setting.default else "no"
    return setting.unset if setting.default is None else str(setting.default)


def option_help(setting: Setting) -> str:
    """One line: what it does, what it may be, its library default (presets may differ)."""
    text = setting.help
    if setting.choices and not all(c in text for c in setting.choices):
        text += f"; one of {setting.range_text()}"
    elif setting.type in (int, float):
        text += f"; {setting.range_text()}"
    return f"{text} (default: {default_text(setting)})"


def layer_help() -> str:
    keys = ", ".join(s.name for s in layer_settings())
    return f"per-layer override NAME:key=value,... (keys: {keys}); repeatable"


def _parameter(setting: Setting) -> inspect.Parameter:
    if setting.type is bool:
        decls = (f"{setting.option}/--no-{setting.option.removeprefix('--')}",)
    else:
        decls = (setting.option,)
    info = typer.Option(*decls, help=option_help(setting), show_default=False)
    kind = Annotated[setting.type | None, info]  # type: ignore[name-defined]
    return inspect.Parameter(
        setting.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind
    )


def with_setting_options(settings: Iterable[Setting] | None = None) -> Callable[[F], F]:
    """Give a command function that ends in ``**settings`` one option per setting.

    Typer reads a command's options from its signature; this states the signature (the
    function's own parameters, then the settings) and passes the settings on as keywords.
    """
    chosen = tuple(user_settings() if settings is None else settings)

    def wrap(fn: F) -> F:
        own = inspect.signature(fn, eval_str=True).parameters.values()
        params = [p for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [_parameter(s) for s in chosen]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return wrap


def parse_layer_overrides(specs: list[str]) -> dict[str, Any]:
    """``["fc1.weight:sparsity=0.95,t=9"]`` -> ``{"fc1.weight": LayerOverride(...)}``."""
    from weightless_core.config.settings import LayerOverride

    kinds = {s.name: s.type for s in layer_settings()}
    out: dict[str, LayerOverride] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep or not name or not rest:
            raise InvalidInputError(f"--layer {spec!r}: expected NAME:key=value[,key=value]")
        values: dict[str, Any] = {}
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if key not in kinds:
                raise InvalidInputError(
                    f"--layer {spec!r}: unknown key {key!r} (use {', '.join(kinds)})"
                )
            if not eq:
                raise InvalidInputError(f"--layer {spec!r}: expected key=value, got {item!r}")
            try:
                values[key] = _parse(kinds[key], raw)
            except ValueError:
                raise InvalidInputError(f"--layer {spec!r}: bad value for {key}: {raw!r}") from None
        out[name] = LayerOverride(**values)
    return out


def _parse(kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.strip().lower() not in ("true", "false", "yes", "no"):
            raise ValueError(raw)
        return raw.strip().lower() in ("true", "yes")
    return kind(raw)
