"""Job settings: presets by name, explicit fields on top, the Deep Compression method."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from app.job_settings import JobSettings, Structure
from weightless_core.config.presets import settings_for
from weightless_core.retrieval import STRUCTURES


@pytest.mark.parametrize("preset", ["default", "fast", "paper", "max"])
def test_presets_give_the_librarys_settings(preset):
    assert JobSettings(preset=preset).to_core() == settings_for(preset)


def test_explicit_fields_override_the_preset():
    core = JobSettings(preset="paper", t=11, finetune_codebooks=True).to_core()
    assert core.t == 11 and core.finetune_codebooks is True and core.sparsity == 0.92


def test_hybrid_is_passed_through_and_strict():
    assert JobSettings(preset="fast", hybrid=True).to_core().hybrid is True
    assert JobSettings(preset="fast").to_core().hybrid is False
    assert JobSettings().to_core().hybrid is True  # the default preset stores the smaller way
    assert JobSettings(hybrid=False).to_core().hybrid is False
    with pytest.raises(ValidationError):
        JobSettings.model_validate({"hybrid": "yes"})


def test_method_is_passed_through_and_validated():
    assert JobSettings(method="deep-compression").to_core().method == "deep-compression"
    with pytest.raises(ValidationError):
        JobSettings(method="zip")


def test_stored_settings_round_trip_through_json():
    settings = JobSettings(preset="max", seed=3)
    again = JobSettings.model_validate_json(settings.model_dump_json())
    assert again.to_core() == settings.to_core()


def test_structure_is_every_library_structure_globally_and_per_layer():
    # the API offers all of them, and "auto" (the smallest per layer)
    assert set(typing.get_args(Structure)) == {*STRUCTURES, "auto"}
    core = JobSettings.model_validate(
        {"structure": "ribbon", "layers": {"fc1.weight": {"structure": "fuse3"}}}
    ).to_core()
    assert core.structure == "ribbon" and core.layers["fc1.weight"].structure == "fuse3"
    assert JobSettings.model_validate({"structure": "auto"}).to_core().structure == "auto"
    for bad in ({"structure": "ribbon2"}, {"layers": {"fc1.weight": {"structure": 3}}}):
        with pytest.raises(ValidationError):
            JobSettings.model_validate(bad)
