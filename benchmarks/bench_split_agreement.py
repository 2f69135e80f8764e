"""Does the validation split rank changes as the test split does? Read from recorded runs.

    python benchmarks/bench_split_agreement.py     # no training: reads benchmarks/results.json

Every change measured by ``bench_max_change.py`` (and the sections it reused) ran each seed
twice from the same dense model, once as the reference preset and once with the change, and
recorded the final accuracy on both splits. So each seed gives a pair of gaps, change minus
reference: one on validation (what every rule decides on) and one on test (scored only).
If validation ranks changes as test does, the two gaps go together. This script pools those
pairs per (model, data) and reports how far they do: Pearson's r over all pairs and over the
pairs whose validation gap is under ``SMALL`` points (the size of change still worth
measuring once a preset is tuned), and how often the two gaps agree in sign where both are at
least ``SIGN`` points. The `paper` section is left out: its arms are different presets, not
one change.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS_JSON, command_line, record

SECTION = "split_agreement"
SKIPPED = ("paper", SECTION)
SMALL = 0.3  # validation gaps under this are the changes a tuned preset still weighs
SIGN = 0.05  # both gaps at least this far from zero to count a sign (agreement or not)


@dataclass(frozen=True)
class Gap:
    """One seed of one change: its final accuracy minus the reference's, on each split."""

    section: str
    arm: str
    seed: int
    val: float
    test: float


def paired_gaps(results: dict[str, Any]) -> dict[tuple[str, str], list[Gap]]:
    """Every recorded (change, seed) with both splits' final accuracy, by (model, data)."""
    out: dict[tuple[str, str], list[Gap]] = {}
    for name, entry in sorted(results.items()):
        data = entry.get("data", {}) if isinstance(entry, dict) else {}
        if name in SKIPPED or not isinstance(data, dict):
            continue
        for part in data.get("pairs") or [data]:
            runs, ref = part.get("runs"), part.get("reference", "max")
            if not isinstance(runs, dict) or ref not in runs:
                continue
            for arm, seeds in runs.items():
                if arm == ref:
                    continue
                for base, run in zip(runs[ref], seeds, strict=False):
                    a, b = base.get("accuracy_stages", {}), run.get("accuracy_stages", {})
                    if not all(k in s for s in (a, b) for k in ("final", "test:final")):
                        continue
                    gap = Gap(name, arm, run["seed"], round(b["final"] - a["final"], 2),
                              round(b["test:final"] - a["test:final"], 2))  # fmt: skip
                    out.setdefault((part["arch"], part["dataset"]), []).append(gap)
    return out


def agreement(gaps: list[Gap]) -> dict[str, Any]:
    """How far the validation gaps follow the test gaps (``None`` where too few to say)."""
    val = np.array([g.val for g in gaps])
    test = np.array([g.test for g in gaps])
    small = np.abs(val) < SMALL
    signed = (np.abs(val) >= SIGN) & (np.abs(test) >= SIGN)
    return {
        "pairs": len(gaps),
        "changes": len({(g.section, g.arm) for g in gaps}),
        "r": _r(val, test),
        "small_pairs": int(small.sum()),
        "r_small": _r(val[small], test[small]),
        "signed_pairs": int(signed.sum()),
        "same_sign": int((np.sign(val[signed]) == np.sign(test[signed])).sum()),
        "sd_val": float(val.std()) if len(gaps) else None,
        "sd_test": float(test.std()) if len(gaps) else None,
    }


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's r, or ``None`` for fewer than 3 pairs or a constant side."""
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def markdown(stats: dict[tuple[str, str], dict[str, Any]]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:+.2f}"

    lines = [
        "Each row pools every recorded change of `bench_max_change.py` on that pair (and the "
        "sections it reused): per seed, the change's final accuracy minus its reference "
        "preset's from the same dense model, on validation (what each rule decided on) and "
        f"on test (scored only). *Small* changes are those whose validation gap is under {SMALL}"
        f" points; a sign is counted where both gaps are at least {SIGN} from zero. The "
        "`paper` section is left out (its arms are different presets).",
        "",
        "| model | data | changes | seeds | r (all) | seeds, small | r (small) | signs agree | "
        "sd of gaps val / test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (arch, data), s in stats.items():
        sd = "-" if s["sd_val"] is None else f"{s['sd_val']:.2f} / {s['sd_test']:.2f}"
        lines.append(
            f"| {arch} | {data} | {s['changes']} | {s['pairs']} | "
            f"{num(s['r'])} | {s['small_pairs']} | {num(s['r_small'])} | "
            f"{s['same_sign']} of {s['signed_pairs']} | {sd} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    results = json.loads(RESULTS_JSON.read_text("utf-8"))
    stats = {pair: agreement(g) for pair, g in paired_gaps(results).items()}
    text = markdown(stats)
    print(text)
    record(
        SECTION,
        title="Do validation and test rank changes alike? (recorded paired runs)",
        command=command_line(__file__, argv),
        markdown=text,
        data={"small": SMALL, "sign": SIGN, "pairs": {"/".join(k): v for k, v in stats.items()}},
    )


if __name__ == "__main__":
    main()
