"""The settings schema is the one source: CompressionSettings, the core CLI and docs/settings.md
agree with it (names, defaults, ranges, choices), and importing it stays light.

The API's side (JobSettings, ``weightless submit``) is checked in tests/app/test_settings_drift.py.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest
import typer.main

from weightless_core import bitpack
from weightless_core.cli import app as core_app
from weightless_core.cli_options import default_text
from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.config.setting_schema import (
    COMPOUND_FIELDS,
    MAX_R,
    MAX_T,
    SETTINGS,
    Setting,
    core_settings,
    layer_settings,
    user_settings,
)
from weightless_core.config.settings import CompressionSettings, LayerOverride, SizeRule
from weightless_core.config.settings_doc import DOC_PATH, markdown
from weightless_core.errors import InvalidInputError
from weightless_core.method.objective import OUTPUT_CHOICES
from weightless_core.retrieval import STRUCTURES


def _valid_and_invalid(s: Setting) -> tuple[list[object], list[object]]:
    """Values the schema allows and values it refuses, at and past its bounds."""
    if s.choices:
        return list(s.choices), ["nope", None, 1]
    if s.type is bool:
        return [True, False], [1, "yes", None]
    ok: list[object] = [None] if s.default is None else []  # unset, where that has a meaning
    bad: list[object] = ["1", True] + ([] if s.default is None else [None])
    step = 1 if s.type is int else 0.001
    if s.lo is not None:
        (bad if s.lo_open else ok).append(s.type(s.lo))
        bad.append(s.type(s.lo - step))
    if s.hi is not None:
        (bad if s.hi_open else ok).append(s.type(s.hi))
        bad.append(s.type(s.hi + step))
    if s.type is int:
        bad.append(float(s.default))  # 4.0 is not an integer
    return ok, bad


def test_compression_settings_fields_are_the_schemas():
    declared = {f.name: f for f in fields(CompressionSettings)}
    assert set(declared) == {s.name for s in core_settings()} | set(COMPOUND_FIELDS)
    for s in core_settings():
        assert declared[s.name].default == s.default, s.name
        assert isinstance(s.default, s.type) or s.unset != "off", s.name  # None says what it does
    assert [f.name for f in fields(LayerOverride)] == [s.name for s in layer_settings()]
    assert all(f.default is None for f in fields(LayerOverride))
    assert {f.name for f in fields(SizeRule)} - {"min_elements"} <= {
        s.name for s in layer_settings()
    }


@pytest.mark.parametrize("setting", core_settings(), ids=lambda s: s.name)
def test_compression_settings_enforce_each_declared_range(setting):
    base = {"r": 1} if setting.name == "t" else {}  # t's lower bound needs r < t
    if setting.name == "distill_mixup":
        base = {"distill": 0.5}  # it distils
    ok, bad = _valid_and_invalid(setting)
    for value in ok:
        if setting.name == "r":
            base = {"t": value + 1}
        assert getattr(CompressionSettings(**base, **{setting.name: value}), setting.name) == value
    for value in bad:
        with pytest.raises(InvalidInputError, match=setting.name):
            CompressionSettings(**base, **{setting.name: value})


@pytest.mark.parametrize("setting", layer_settings(), ids=lambda s: s.name)
def test_layer_overrides_enforce_each_declared_range(setting):
    base = {"r": 1} if setting.name == "t" else {}
    ok, bad = _valid_and_invalid(setting)
    for value in [v for v in ok if v is not None]:  # None keeps the global value
        over = {setting.name: value, **({"t": value + 1} if setting.name == "r" else {})}
        s = CompressionSettings(**base, layers={"fc1.weight": LayerOverride(**over)})
        assert getattr(s.plan("fc1.weight"), setting.name) == value
    for value in [v for v in bad if v is not None]:  # None keeps the global value
        with pytest.raises(InvalidInputError, match=rf"layer 'fc1.weight': .*{setting.name}"):
            CompressionSettings(
                **base, layers={"fc1.weight": LayerOverride(**{setting.name: value})}
            )


def test_structure_names_and_bit_limits_are_the_kernels():
    assert layer_settings()  # the schema is not empty by accident
    structure = next(s for s in SETTINGS if s.name == "structure")
    assert structure.choices == (*STRUCTURES, "auto")
    assert MAX_T == bitpack.MAX_T
    outputs = next(s for s in SETTINGS if s.name == "outputs")
    assert outputs.choices == OUTPUT_CHOICES
    r = next(s for s in SETTINGS if s.name == "r")
    assert (r.lo, r.hi) == (1, MAX_R)


def _options(command: str) -> dict[str, object]:
    group = typer.main.get_command(core_app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


def test_compress_offers_every_user_setting_with_its_default_and_range():
    params = _options("compress")
    for s in user_settings():
        p = params[s.name]
        assert s.option in p.opts, s.name
        assert p.default is None, s.name  # not given: the preset decides
        assert f"(default: {default_text(s)})" in p.help, s.name
        for choice in s.choices:
            assert choice in p.help, (s.name, choice)
        if s.type in (int, float):
            assert s.range_text() in p.help, s.name
    for s in SETTINGS:
        if s.scope == "library":
            assert s.name not in params
    assert all(name in params["preset"].help for name in PRESETS)
    assert all(s.name in params["layer"].help for s in layer_settings())


def test_docs_settings_md_is_generated_from_the_schema():
    assert DOC_PATH.read_text(encoding="utf-8") == markdown(), (
        "docs/settings.md is stale: run `python -m weightless_core.config.settings_doc`"
    )
    for s in SETTINGS:
        assert f"| `{s.name}` |" in markdown()


def test_importing_the_settings_loads_no_kernels():
    code = (
        "import sys, weightless_core.config.settings, weightless_core.config.presets, "
        "weightless_core.config.setting_schema\n"
        "heavy = [m for m in ('numba', 'torch', 'numpy', 'weightless_core.retrieval') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
