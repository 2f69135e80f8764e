"""The scale benchmark's service leg on a tiny GPT-2-shaped checkpoint: upload, a job with no
data set and no architecture, progress, download and decode, through the real API, worker and
SeaweedFS that ``bench_scale.measure_service`` starts (the same code the 124M run uses)."""

from __future__ import annotations

import importlib
import json
import sys

from servicekit import ROOT


def test_a_checkpoint_without_code_goes_through_the_service(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("bench_scale", None)
    scale = importlib.import_module("bench_scale")
    scale.main(["--quick", "--out-dir", str(tmp_path)])
    m = json.loads((tmp_path / "scale.json").read_text())
    assert m["decoded_matches"] is True
    assert m["progress_messages"] >= 1
    assert m["worker_peak_rss"] > 100 * 2**20  # the worker's own peak: torch is loaded
    assert 0 < m["service_file_bytes"] < m["checkpoint_bytes"]
    result = m["result"]
    assert result["weights_paper_ratio"] > 1
    text = (tmp_path / "scale.md").read_text()
    assert "| job (worker) |" in text and "| upload (API) |" in text
