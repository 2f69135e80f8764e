"""The job row's result is read off the typed Report and checked by the API's own model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from app.schemas import Result
from weightless_core.config.settings import CompressionSettings
from weightless_core.method.pipeline import compress
from weightless_core.method.tensor_model import nested_module
from worker.job_result import job_result, json_safe

SETTINGS = CompressionSettings(sparsity=0.9, r=3, t=8, min_elements=100)


@pytest.fixture(scope="module")
def compressed():
    torch.manual_seed(0)
    model = nested_module({"fc.weight": torch.randn(64, 48), "fc.bias": torch.randn(64)})
    return compress(model, None, SETTINGS)


def test_every_field_comes_from_the_report(compressed):
    report, size = compressed.report, len(compressed.to_bytes())
    result = job_result(report, size)
    d = json_safe(report.to_dict())
    assert set(result) == set(Result.model_fields)
    assert result["method"] == d["method"] == "weightless"
    assert (result["original_bytes"], result["encoded_bytes"]) == (d["original_bytes"], size)
    assert result["ratio"] == round(d["original_bytes"] / size, 3)
    assert result["weights_ratio"] == d["weights_ratio"] > 1
    assert result["weights_paper_ratio"] == d["weights_paper_ratio"] > 1
    assert result["accuracy_before"] is result["accuracy_after"] is None  # data-free
    assert result["layers"] == d["layers"]
    assert result["baseline"] == {
        "method": "deep-compression",
        "weights_ratio": d["baseline"]["weights_paper_ratio"],
        "file_bytes": d["baseline"]["file_bytes"],
        "accuracy": None,
        "bound_weights_ratio": d["baseline"]["weights_bound_ratio"],
        "context_weights_ratio": d["baseline"]["weights_context_ratio"],
    }
    assert (result["search"], result["source_bytes"], result["source_dtypes"]) == (None, None, [])
    assert result["metric"] == "accuracy" and result["notes"] == []
    assert Result.of_row(result).model_dump(mode="json") == result


def test_search_is_summarised_and_non_finite_figures_become_null(compressed):
    report = dataclasses.replace(
        compressed.report, accuracy={"dense": 90.0, "final": math.nan}, baseline=None
    )
    search = {"within_budget": True, "budget": 1.0, "seconds": math.inf, "stopped_early": False,
              "steps": [{}, {}, {}], "best": {}}  # fmt: skip
    result = job_result(report, 100, search)
    assert result["accuracy_before"] == 90.0 and result["accuracy_after"] is None
    assert result["baseline"] is None
    assert result["search"] == {"within_budget": True, "budget": 1.0, "seconds": None,
                                "stopped_early": False, "runs": 3}  # fmt: skip
