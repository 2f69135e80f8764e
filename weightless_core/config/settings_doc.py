"""``docs/settings.md``, written from the settings schema so the table cannot drift from the code.

Run ``python -m weightless_core.config.settings_doc`` after changing
``weightless_core.config.setting_schema``; tests/core/test_setting_schema.py fails while the
committed file differs from ``markdown()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.config.setting_schema import (
    COMPOUND_FIELDS,
    METHODS,
    SETTINGS,
    Setting,
    layer_settings,
)

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
_WHERE = {
    "user": "library, CLI, API",
    "library": "library",
    "search": "CLI, API (the search)",
}


def _default(s: Setting) -> str:
    if s.default is None:
        return s.unset
    if s.type is bool:
        return "yes" if s.default else "no"
    return f"`{s.default}`"


def _allowed(s: Setting) -> str:
    text = " ".join(f"`{c}`" for c in s.choices) if s.choices else s.range_text()
    if s.service_hi is not None:
        text += f" (service: at most {s.service_hi:g})"
    return text.replace("|", "\\|")


def _methods(s: Setting) -> str:
    return "both" if set(s.methods) == set(METHODS) else ", ".join(s.methods)


def _row(s: Setting) -> str:
    cells = (
        f"`{s.name}`",
        "" if s.scope == "library" else f"`{s.option}`",
        s.type.__name__,
        _allowed(s),
        _default(s),
        _methods(s),
        "yes" if s.per_layer else "",
        _WHERE[s.scope],
        s.help.replace("|", "\\|"),
    )
    return "| " + " | ".join(cells) + " |"


def markdown() -> str:
    """The whole of docs/settings.md."""
    layer_keys = ", ".join(f"`{s.name}`" for s in layer_settings())
    head = (
        "setting",
        "option",
        "type",
        "allowed",
        "default",
        "methods",
        "per layer",
        "where",
        "what it does",
    )
    lines = [
        "# Compression settings",
        "",
        "<!-- Generated from weightless_core/config/setting_schema.py by "
        "`python -m weightless_core.config.settings_doc`; do not edit by hand. -->",
        "",
        "Every setting, as `CompressionSettings(name=...)` in Python, `--name` on "
        "`weightless compress` and `weightless submit`, and `settings.name` in a job sent to "
        "the API. A preset (`" + "`, `".join(PRESETS) + "`, docs/presets.md) sets starting "
        "values; a setting given explicitly wins over the preset's, per-size values included. "
        "Defaults below are the library's, without a preset. "
        "Methods: the settings that matter for `weightless` only are ignored by "
        "`deep-compression`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *(_row(s) for s in SETTINGS),
        "",
        f"Per layer: {layer_keys}, as `layers={{name: LayerOverride(...)}}`, "
        "`--layer NAME:key=value,...` (repeatable) or `settings.layers.NAME.key`.",
        "",
        "Library only, not single values: " + ", ".join(f"`{n}`" for n in COMPOUND_FIELDS) + " "
        "(see `CompressionSettings`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Write the table (to ``argv[0]`` if given, else docs/settings.md)."""
    path = Path(argv[0]) if argv else DOC_PATH
    path.write_text(markdown(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
