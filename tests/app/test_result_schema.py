"""A job's result: every field required, rows written by older workers completed explicitly."""

from __future__ import annotations

import pydantic
import pytest

from app.schemas import ADDED_LATER, Result

# What the first worker wrote (before methods, baselines, searches, dtypes, notes and metrics).
FIRST_ROW = {
    "original_bytes": 1000, "encoded_bytes": 10, "ratio": 100.0, "weights_ratio": 120.0,
    "accuracy_before": 90.0, "accuracy_after": 89.5, "layers": [{"name": "fc1", "t": 8}],
}  # fmt: skip


def test_a_row_of_the_first_worker_reads_with_what_it_meant():
    result = Result.of_row(FIRST_ROW).model_dump(mode="json")
    assert result == {**FIRST_ROW, **ADDED_LATER}
    assert result["method"] == "weightless" and result["metric"] == "accuracy"


def test_a_baseline_from_before_the_entropy_bound_reads_with_none():
    base = {"method": "deep-compression", "weights_ratio": 60.0, "file_bytes": 20, "accuracy": 90}
    result = Result.of_row({**FIRST_ROW, "baseline": base})
    assert result.baseline is not None and result.baseline.bound_weights_ratio is None
    assert result.baseline.context_weights_ratio is None


@pytest.mark.parametrize("field", ["original_bytes", "encoded_bytes", "ratio", "layers"])
def test_a_field_every_worker_wrote_is_required(field):
    row = {k: v for k, v in FIRST_ROW.items() if k != field}
    with pytest.raises(pydantic.ValidationError, match=field):
        Result.of_row(row)


def test_a_misspelt_field_fails_instead_of_reading_as_null():
    fields = {**FIRST_ROW, **ADDED_LATER}
    fields["weights_paper_ratoi"] = fields.pop("weights_paper_ratio")
    with pytest.raises(pydantic.ValidationError, match="weights_paper_ratio"):
        Result(**fields)


def test_the_schema_marks_every_field_required():
    schema = Result.model_json_schema()
    assert set(schema["required"]) == set(Result.model_fields)
