"""The sparsity-frontier benchmark's smoke run and its keeping of pairs recorded earlier."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("bench_frontier", None)
    import bench_frontier

    return bench_frontier


def test_frontier_quick_run_compares_magnitude_and_regrowth(tmp_path, monkeypatch):
    frontier = _script(monkeypatch)
    frontier.main(["--quick", "--out-dir", str(tmp_path)])
    text = (tmp_path / "frontier.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| lenet-300-100 | digits |")]
    assert [row.split("|")[3].strip() for row in rows] == ["10", "5"]
    for row in rows:
        # mean ± sd [seed 0, seed 1] for both methods, then the gain and the dense accuracy
        cells = [c.strip() for c in row.split("|")[4:8]]
        for cell in cells[:2]:
            mean, seeds = re.fullmatch(r"([\d.]+) ± [\d.]+ \[([\d., ]+)\]", cell).groups()
            values = [float(x) for x in seeds.split(",")]
            assert len(values) == 2 and all(20 < v <= 100 for v in values)
            assert abs(float(mean) - sum(values) / 2) < 0.006
        assert re.fullmatch(r"[+-][\d.]+", cells[2])


def test_frontier_keeps_only_pairs_over_the_same_levels_and_seeds(tmp_path, monkeypatch):
    frontier = _script(monkeypatch)
    levels = list(frontier.KEPT_PERCENT["lenet-5"])

    def pair(dataset: str, kept: list[float], **extra) -> dict:
        points = [{"kept_percent": k} for k in kept]
        base = {"arch": "lenet-5", "dataset": dataset, "seeds": [0, 1, 2], "seconds": 1.0}
        return base | {"points": points} | extra

    kept = pair("mnist", levels)
    others = [pair("a", levels[:-1]), pair("b", levels, seeds=[0]), {"arch": "lenet-5"}]
    (tmp_path / "results.json").write_text(
        json.dumps({"frontier": {"data": {"pairs": [kept, *others]}}})
    )
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")
    assert frontier.recorded_pairs() == [kept]
