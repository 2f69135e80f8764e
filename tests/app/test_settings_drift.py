"""The service's side of the settings schema: the API's JobSettings (hence its OpenAPI) and
``weightless submit`` offer every user setting with the schema's range, choices and help, and
the API process loads neither numba nor the retrieval kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer.main
from pydantic import ValidationError

from app.cli import app as service_cli
from app.job_settings import JobSettings, LayerSettings
from weightless_core.cli import app as core_cli
from weightless_core.cli_options import default_text
from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.config.setting_schema import (
    SEARCH_SECONDS,
    Setting,
    layer_settings,
    user_settings,
)


def _expected_bounds(s: Setting) -> dict[str, object]:
    out: dict[str, object] = {}
    if s.lo is not None:
        out["exclusiveMinimum" if s.lo_open else "minimum"] = s.lo
    hi = s.hi if s.service_hi is None else s.service_hi
    if hi is not None:
        out["exclusiveMaximum" if s.hi_open else "maximum"] = hi
    return out


def _property(schema: dict, name: str) -> dict:
    """The non-null branch of an optional field's JSON schema, with its description."""
    prop = schema["properties"][name]
    branch = next(b for b in prop["anyOf"] if b.get("type") != "null")
    return {**branch, "default": prop.get("default"), "description": prop.get("description")}


@pytest.mark.parametrize(
    ("model", "settings"),
    [(JobSettings, user_settings()), (LayerSettings, layer_settings())],
    ids=["JobSettings", "LayerSettings"],
)
def test_openapi_of_the_settings_is_the_schema(model, settings):
    schema = model.model_json_schema()
    extra = {"preset", "layers"} if model is JobSettings else set()
    assert set(schema["properties"]) == {s.name for s in settings} | extra
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    for s in settings:
        prop = _property(schema, s.name)
        assert prop["default"] is None, s.name  # not given: the preset's value
        assert prop["description"] == s.help, s.name
        if s.choices:
            assert prop["enum"] == list(s.choices), s.name
        else:
            assert prop["type"] == kinds[s.type], s.name
        bounds = {k: prop[k] for k in prop if "imum" in k}
        assert bounds == _expected_bounds(s), s.name
    if model is JobSettings:
        assert schema["properties"]["preset"]["enum"] == list(PRESETS)


@pytest.mark.parametrize("setting", user_settings(), ids=lambda s: s.name)
def test_the_api_refuses_what_the_schema_refuses(setting):
    hi = setting.hi if setting.service_hi is None else setting.service_hi
    bad: list[object] = ["nope"] if setting.choices else ["1"]
    if setting.type in (int, float):
        step = 1 if setting.type is int else 0.001
        bad += [setting.type(setting.lo - step), setting.type(hi + step)]
    for value in bad:
        with pytest.raises(ValidationError, match=setting.name):
            JobSettings.model_validate({setting.name: value})
    if setting.default is not None and setting.scope == "user":  # the library default passes
        given = JobSettings.model_validate({"preset": "fast", setting.name: setting.default})
        assert getattr(given.to_core(), setting.name) == setting.default


def test_the_search_budget_defaults_to_the_librarys():
    assert JobSettings().search_budget == SEARCH_SECONDS
    assert JobSettings(search_seconds=5.0).search_budget == 5.0


def _params(cli: typer.Typer, command: str) -> dict[str, object]:
    group = typer.main.get_command(cli)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


def test_submit_offers_the_same_settings_as_compress():
    submit, compress = _params(service_cli, "submit"), _params(core_cli, "compress")
    for s in user_settings():
        for params in (submit, compress):
            p = params[s.name]
            assert s.option in p.opts and p.default is None, s.name
            assert f"(default: {default_text(s)})" in p.help, s.name
        assert submit[s.name].help == compress[s.name].help
    assert all(name in submit["preset"].help for name in PRESETS)
    assert submit["layer"].help == compress["layer"].help
    assert all(s.name in submit["layer"].help for s in layer_settings())


def test_the_service_cli_holds_every_library_command():
    commands = typer.main.get_command(service_cli).commands  # type: ignore[attr-defined]
    library = typer.main.get_command(core_cli).commands  # type: ignore[attr-defined]
    assert set(library) <= set(commands)
    assert {"serve", "submit", "jobs", "job", "download", "cancel", "admin"} <= set(commands)


def test_the_api_process_loads_no_kernels(tmp_path):
    code = (
        "import sys\n"
        "from app.main import build_app\n"
        "build_app().openapi()\n"
        "heavy = [m for m in ('numba', 'torch', 'weightless_core.retrieval') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "WEIGHTLESS_DATA_DIR": str(tmp_path)}
    for key in ("WEIGHTLESS_DATABASE_URL", "WEIGHTLESS_BROKER_URL"):
        env.pop(key, None)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env, cwd=tmp_path)
