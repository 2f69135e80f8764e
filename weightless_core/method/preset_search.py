"""The search behind the ``max`` preset: smallest weights within an accuracy budget.

Values are chosen per *size class* of encoded tensor (``SizeRule``), so the result fits any
model. Greedy, one class at a time from the largest (its bytes dominate), keeping the smallest
configuration that stays within ``budget`` points of the dense model on ``data.x_val``:

1. sparsity and r (both change pruning and clustering, so each candidate is a full run) at a
   false-positive rate of ``2**-t_margin`` (t = r + ``t_margin``), sparsities down to 0.3 %
   kept and r down to 1; once no r keeps the budget at a sparsity, sparser ones are skipped
   (they only lose more);
2. then t for that class, downwards from there; all its t values share one pruning pass
   (``compress_variants``).

If even the least pruned, most generous configuration misses the budget, the search keeps the
most accurate one it tried and says so (``feasible`` is false). Every evaluation is recorded
(``SearchStep``), so the path is documented, and the search stops
starting new evaluations once ``time_budget`` seconds have passed (the best so far is kept).
Use a validation split held out from training, so the table that reports the preset is not the
data that chose it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from weightless_core.config.settings import CompressionSettings, SizeRule
from weightless_core.io.data import Dataset
from weightless_core.method.pipeline import CompressionResult, compress_variants

# Size classes (smallest tensor of each) and the values tried for them, least aggressive first.
CLASSES: dict[str, int] = {"large": 100_000, "medium": 10_000, "small": 1_000}
SPARSITY_LEVELS: dict[str, tuple[float, ...]] = {
    "large": (0.9, 0.95, 0.97, 0.98, 0.99, 0.993, 0.995, 0.997),
    "medium": (0.85, 0.9, 0.93, 0.95, 0.97, 0.98),
    "small": (0.6, 0.7, 0.8, 0.9, 0.95),
}
R_LEVELS = (4, 3, 2, 1)
T_MARGIN = 6
"""Start each candidate at a false-positive rate of 2**-6 (t = r + 6), then search t down."""


@dataclass(frozen=True)
class ClassValues:
    sparsity: float
    r: int
    t: int


@dataclass
class SearchStep:
    """One evaluated configuration: what was tried, what it gave, whether it was kept."""

    phase: str
    size_class: str
    values: dict[str, dict[str, Any]]
    accuracy: float
    weights_bytes: int
    within_budget: bool
    chosen: bool = False
    seconds: float = 0.0


@dataclass
class SearchResult:
    dense_accuracy: float
    budget: float
    best: dict[str, ClassValues]
    steps: list[SearchStep] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    feasible: bool = False
    result: CompressionResult | None = field(default=None, repr=False)  # the chosen run

    def size_rules(self) -> tuple[SizeRule, ...]:
        return tuple(
            SizeRule(CLASSES[name], sparsity=v.sparsity, r=v.r, t=v.t)
            for name, v in self.best.items()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense_accuracy": self.dense_accuracy,
            "budget": self.budget,
            "best": {k: asdict(v) for k, v in self.best.items()},
            "seconds": round(self.seconds, 1),
            "stopped_early": self.stopped_early,
            "feasible": self.feasible,
            "steps": [asdict(s) for s in self.steps],
        }


def search_size_rules(
    make_model: Callable[[], nn.Module],
    data: Dataset,
    base: CompressionSettings,
    *,
    dense_accuracy: float,
    budget: float = 0.2,
    time_budget: float = 1800.0,
    t_margin: int = T_MARGIN,
    levels: Mapping[str, Sequence[float]] | None = None,
    r_levels: Sequence[int] = R_LEVELS,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Greedy search of per-size-class (sparsity, r, t); see the module docstring.

    ``make_model()`` returns a fresh copy of the dense model each call; ``base`` gives every
    other setting (epochs, seed...). Classes with no tensor in the model are skipped.
    """
    levels = dict(levels or SPARSITY_LEVELS)
    sizes = _class_sizes(make_model(), base)
    present = [c for c in CLASSES if sizes.get(c)]
    return greedy_search(
        make_model, data, base, groups=present, levels=levels, apply=_settings,
        dense_accuracy=dense_accuracy, budget=budget, time_budget=time_budget,
        t_margin=t_margin, r_levels=r_levels, log=log,
    )  # fmt: skip


Apply = Callable[[CompressionSettings, Mapping[str, ClassValues]], CompressionSettings]


def greedy_search(
    make_model: Callable[[], nn.Module],
    data: Dataset,
    base: CompressionSettings,
    *,
    groups: Sequence[str],
    levels: Mapping[str, Sequence[float]],
    apply: Apply,
    dense_accuracy: float,
    budget: float,
    time_budget: float,
    t_margin: int = T_MARGIN,
    r_levels: Sequence[int] = R_LEVELS,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """The greedy search over ``groups`` (size classes, or single layers), most important first;
    ``apply(base, values by group)`` turns a configuration into settings."""
    started = time.monotonic()
    present = list(groups)
    best = {
        c: ClassValues(levels[c][0], r_levels[0], min(r_levels[0] + t_margin, 32)) for c in present
    }
    result = SearchResult(dense_accuracy, budget, dict(best))
    floor = dense_accuracy - budget
    runs: dict[int, CompressionResult] = {}  # id(step) -> its run, while it may be chosen

    def out_of_time() -> bool:
        if time.monotonic() - started > time_budget:
            result.stopped_early = True
            return True
        return False

    def run(phase: str, cls: str, configs: list[dict[str, ClassValues]]) -> list[SearchStep]:
        t0 = time.monotonic()
        variants = [apply(base, cfg) for cfg in configs]
        results = compress_variants(make_model(), data, variants)
        each = (time.monotonic() - t0) / len(configs)
        steps = [
            _step(phase, cls, cfg, r, floor, each) for cfg, r in zip(configs, results, strict=True)
        ]
        result.steps.extend(steps)
        for step, r in zip(steps, results, strict=True):
            runs[id(step)] = r
        if log is not None:
            for s in steps:
                log(
                    f"{phase} {cls}: {s.values[cls]} -> {s.accuracy:.2f}% "
                    f"{s.weights_bytes:,} B {'ok' if s.within_budget else 'over budget'}"
                )
        return steps

    def choose(step: SearchStep, previous: SearchStep | None) -> SearchStep:
        if previous is not None:
            previous.chosen = False
        step.chosen = True
        result.result = runs[id(step)]
        return step

    def forget_others(kept: SearchStep) -> None:
        """After a batch: only the chosen run's model and tables stay in memory."""
        for other in [k for k in runs if k != id(kept)]:
            del runs[other]

    if not present:
        result.seconds = time.monotonic() - started
        return result

    # The starting point (least pruning, generous t), so there is always one evaluated
    # configuration to fall back on; if even that misses the budget, t is raised further.
    configs = [dict(best)]
    starts = run("start", present[0], configs)
    if not starts[0].within_budget:  # the raised ones share one pruning pass
        configs += [
            {c: ClassValues(v.sparsity, v.r, min(v.t + extra, 32)) for c, v in best.items()}
            for extra in (2, 4)
        ]
        starts += run("start", present[0], configs[1:])
    current = next((s for s in starts if s.within_budget), max(starts, key=lambda s: s.accuracy))
    current = choose(current, None)
    forget_others(current)
    best = configs[starts.index(current)]
    result.feasible = current.within_budget
    margin = best[present[0]].t - best[present[0]].r  # candidates get the start's t margin

    for cls in present:  # most important (largest) first: its bytes dominate
        for sparsity in levels[cls]:  # sparsity and r: each candidate a full run
            kept_budget = sparsity == best[cls].sparsity and current.within_budget
            for r in r_levels:
                values = ClassValues(sparsity, r, min(r + margin, 32))
                if values == best[cls] or out_of_time():
                    continue
                step = run("sparsity-r", cls, [{**best, cls: values}])[0]
                kept_budget = kept_budget or step.within_budget
                if _better(step, current):
                    current = choose(step, current)
                    best[cls] = values
                    result.feasible = True
                forget_others(current)
            if not kept_budget:  # pruning further only loses more accuracy
                break
        v = best[cls]  # then t, all values sharing one pruning pass
        options = [ClassValues(v.sparsity, v.r, t) for t in range(v.r + 1, v.t)]
        if not options or out_of_time():
            continue
        steps = run("t", cls, [{**best, cls: o} for o in options])
        for step, option in zip(steps, options, strict=True):
            if _better(step, current):
                current = choose(step, current)
                best[cls] = option
                result.feasible = True
        forget_others(current)
    result.best = best
    result.seconds = time.monotonic() - started
    return result


def _better(step: SearchStep, current: SearchStep) -> bool:
    """Within budget and smaller; a within-budget step always beats one over budget."""
    if not step.within_budget:
        return False
    return not current.within_budget or step.weights_bytes < current.weights_bytes


def _settings(base: CompressionSettings, cfg: Mapping[str, ClassValues]) -> CompressionSettings:
    rules = tuple(SizeRule(CLASSES[c], sparsity=v.sparsity, r=v.r, t=v.t) for c, v in cfg.items())
    return base.with_(size_rules=rules, baseline=False)


def _step(
    phase: str,
    cls: str,
    cfg: Mapping[str, ClassValues],
    result: CompressionResult,
    floor: float,
    seconds: float,
) -> SearchStep:
    acc = result.report.accuracy["final"]
    assert acc is not None  # the search always trains and evaluates
    return SearchStep(
        phase=phase,
        size_class=cls,
        values={c: asdict(v) for c, v in cfg.items()},
        accuracy=acc,
        weights_bytes=result.report.weights_paper_bytes,
        within_budget=acc >= floor,
        seconds=round(seconds, 1),
    )


def _class_sizes(model: nn.Module, base: CompressionSettings) -> dict[str, int]:
    """How many encoded tensors fall in each size class (classes with none are skipped)."""
    from weightless_core.method.pipeline import select_targets
    from weightless_core.method.training import parameters_by_name

    params = parameters_by_name(model)
    counts = dict.fromkeys(CLASSES, 0)
    for name in select_targets(params, base.with_(size_rules=())):
        numel = params[name].numel()
        cls = next((c for c, lo in CLASSES.items() if numel >= lo), None)
        if cls is not None:
            counts[cls] += 1
    return counts
