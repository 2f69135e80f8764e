"""Progress units: counted before the run, so the bar ends exactly where the work does."""

from __future__ import annotations

import pytest
import torch

from weightless_core.config.settings import CompressionSettings
from weightless_core.io.data import load_dataset
from weightless_core.method.pipeline import Progress, compress
from weightless_core.method.progress import ProgressMeter, work_units
from weightless_core.models.lenet import build_model

TINY = CompressionSettings(
    sparsity=0.9, r=3, t=8, prune_steps=2, prune_epochs=1, cluster_epochs=1, retrain_epochs=1,
    batch_size=256, min_elements=100,
)  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    [
        TINY,
        TINY.with_(later_layers="shared"),
        TINY.with_(method="deep-compression"),
        TINY.with_(hybrid=True, retrain_after_lossless=False),
    ],
    ids=["recluster", "shared", "deep-compression", "no-retraining-after-lossless"],
)
def test_the_last_unit_of_work_ends_the_bar(settings, monkeypatch):
    meters: list[ProgressMeter] = []
    advance = ProgressMeter.advance

    def counted(self: ProgressMeter) -> None:
        assert self.done < self.total, "more work than counted"
        meters.append(self)
        advance(self)

    monkeypatch.setattr(ProgressMeter, "advance", counted)
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("lenet-300-100", input_shape=data.input_shape, num_classes=10)
    events: list[Progress] = []
    compress(model, data, settings, progress=events.append)
    meter = meters[-1]
    assert meter.done == meter.total  # every counted unit was done, none was left over
    assert events[-2].fraction == events[-1].fraction == 1.0 and events[-1].stage == "done"


def test_units_count_epochs_and_layers():
    assert work_units(TINY, 3, trains=False) == 3  # data-free: one unit per layer
    # 2 pruning epochs, 1 clustering, 3 layers + 3 retraining epochs, 2 re-clusterings
    assert work_units(TINY, 3, trains=True) == 2 + 1 + 3 + 3 + 2
    seen: list[Progress] = []
    meter = ProgressMeter(seen.append, 4)
    meter.advance()
    meter.emit("prune", "half an epoch more", partial=0.5)
    meter.emit("done", "finished")
    assert [p.fraction for p in seen] == [0.375, 1.0]
