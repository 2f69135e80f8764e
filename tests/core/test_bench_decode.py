"""``benchmarks/bench_decode.py`` on a small layer: every path runs, agrees and is tabled."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_decode_small_shape(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("bench_decode", None)
    import bench_decode

    before = (ROOT / "BENCHMARKS.md").read_bytes()
    assert bench_decode.main(["--shape", "300", "700", "--runs", "2"]) == 0
    text = capsys.readouterr().out
    for structure in bench_decode.STRUCTURES:
        for path in ("decode()", "packed stream (before)", "torch CPU"):
            assert f"| {structure}: {path} |" in text
    assert "| floor (CPU) |" in text and "M positions/s" in text
    assert (ROOT / "BENCHMARKS.md").read_bytes() == before  # another shape is never recorded
