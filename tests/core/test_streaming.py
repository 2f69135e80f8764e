"""A checkpoint without code is compressed tensor by tensor, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import save_file

from weightless_core.config.settings import CompressionSettings
from weightless_core.fileformat import load, read_model, save
from weightless_core.io.modelio import load_model
from weightless_core.method.pipeline import Progress, compress

SETTINGS = CompressionSettings(sparsity=0.95, r=3, t=8, min_elements=1000)


def test_the_joined_file_report_and_baseline_add_up(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {f"blocks.{i}.w": torch.randn(64 * (i + 1), 96, generator=g) for i in range(3)}
    state["blocks.0.b"] = torch.randn(96, generator=g)
    save_file(state, tmp_path / "c.safetensors")
    events: list[Progress] = []
    model = load_model(tmp_path / "c.safetensors").module
    result = compress(model, None, SETTINGS.with_(hybrid=True), progress=events.append)
    report = result.report
    assert report.file_bytes == result.save(tmp_path / "c.wlss")
    assert [row.name for row in report.layers] == list(model.specs)  # the checkpoint's order
    assert set(model.specs) == set(state)
    assert report.original_bytes == sum(4 * t.numel() for t in state.values())
    base, base_entries = report.baseline, result.baseline_entries
    assert base is not None and base_entries is not None and base.method == "deep-compression"
    assert base.file_bytes == save(tmp_path / "dc.wlss", base_entries,
                                   metadata={**result.metadata, "method": base.method,
                                             "accuracy": dict(base.accuracy)})  # fmt: skip
    assert set(read_model(tmp_path / "c.wlss").encoded_layers()) | set(
        read_model(tmp_path / "c.wlss").deep_compressed_layers()
    ) == {"blocks.0.w", "blocks.1.w", "blocks.2.w"}
    # progress walks the checkpoint tensor by tensor, by bytes, and ends at 1
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e.layer for e in events if e.layer} == {"blocks.0.w", "blocks.1.w", "blocks.2.w"}
    back = load(tmp_path / "c.wlss")
    assert torch.equal(back["blocks.0.b"], state["blocks.0.b"])


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, torch
    from safetensors.torch import save_file
    from weightless_core.io.modelio import load_model
    from weightless_core.method.pipeline import compress
    from weightless_core.config.settings import CompressionSettings

    settings = CompressionSettings(sparsity=0.95, r=3, t=8, min_elements=1000)
    folder = sys.argv[1]
    g = torch.Generator().manual_seed(0)
    save_file({"w": torch.randn(64, 64, generator=g)}, f"{folder}/warm.safetensors")
    big = {f"layers.{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(16)}
    save_file(big, f"{folder}/big.safetensors")
    del big
    # warm up on a small tensor: the kernels compiled, the allocator primed
    compress(load_model(f"{folder}/warm.safetensors").module, None, settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = compress(load_model(f"{folder}/big.safetensors").module, None, settings)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after,
                      "encoded": sum(r.encoded for r in result.report.layers)}))
    """
)


def test_memory_holds_one_tensor_not_the_checkpoint(tmp_path):
    """16 tensors of 4 MiB (64 MiB in all): the peak grows by less than the checkpoint, as
    only one tensor and its encoding work (about ten times the tensor today, the most of it
    in encoding) are in memory at a time."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["encoded"] == 16
    growth_mib = (measured["after_kib"] - measured["before_kib"]) / 1024
    assert growth_mib < 64, measured  # the whole checkpoint alone would be 64 MiB
