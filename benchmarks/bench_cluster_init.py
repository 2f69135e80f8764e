"""Where k-means starts: `max` with linear starts against sign-aware ones, same pruned models.

    python benchmarks/bench_cluster_init.py                 # LeNet-5 / MNIST, seeds 0 1 2
    python benchmarks/bench_cluster_init.py --seeds 0       # one seed: a direction only
    python benchmarks/bench_cluster_init.py --quick --out-dir DIR  # tiny smoke run (the tests)

Magnitude pruning leaves a layer's weights bimodal: nothing near zero survives. k-means started
linearly over [min, max] (Deep Compression's choice, and `max`'s) puts centroids in that gap,
where some end empty: LeNet-5's conv1, conv2 and fc2 used 6 of their 8 codes. Started over each
sign's own range (``cluster_init="sign"``) all 8 are used and the clustering error falls by
12-45 %, at the price of more code entropy in the layers Deep Compression stores. Each seed
prunes once; each start then clusters, retrains and encodes from that same pruned model
(``compress_variants``), so the columns differ only by where k-means started (in the first
clustering and in every re-clustering before a layer is stored).

The rule, written before the 3-seed run: `max` takes ``cluster_init="sign"`` if over seeds 0, 1
and 2 (a) its mean final validation accuracy is above linear's, (b) no seed's is more than 0.10
points below that seed's linear one, and (c) its means still meet LeNet-5's size targets
(model >= 382x and >= 1.3x DC-best, fc1 >= 500x and >= 1.5x DC-best). The table prints the
verdict. Validation decides; the test split is scored only. Writes the ``cluster_init`` section
of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import bench_parser
from bench_t_tolerance import _mean, size_figures
from bench_veto import cells, variants_main

VARIANTS: dict[str, dict[str, Any]] = {
    "linear (max)": {"cluster_init": "linear"},
    "sign": {"cluster_init": "sign"},
}
REFERENCE, CANDIDATE = VARIANTS
TOLERANCE = 0.10  # points a seed may fall below its reference under the rule
TARGETS = {"model_ratio": 382.0, "model_gain": 1.3, "ratio": 500.0, "gain": 1.5}


def verdict(
    result: dict[str, Any],
    reference: str = REFERENCE,
    candidate: str = CANDIDATE,
    keep: str = "keep linear",
    *,
    smaller: bool = False,
) -> str:
    """The rule's verdict over the seeds run, each part named: ``candidate`` is adopted over
    ``reference`` (else ``keep``) if it gains on mean validation, loses no seed by more than
    ``TOLERANCE`` and still meets LeNet-5's size targets. With ``smaller`` (a change made to
    save bytes) a mean validation equal to the reference's is enough, and (d) the whole model
    must be smaller on the mean."""
    ref, cand = result["runs"][reference], result["runs"][candidate]
    if len(cand) < 3 or len(ref) != len(cand):
        return f"no verdict: the rule needs 3 seeds, {len(cand)} run"
    # to the hundredth, as the accuracies are printed: in floats 99.10 - 99.20 is below -0.10
    gaps = [round(c["weightless"]["val"] - r["weightless"]["val"], 2)
            for r, c in zip(ref, cand, strict=True)]  # fmt: skip
    sizes = size_figures(cand)
    mean_gap = _mean(gaps)
    # a change that saves bytes may tie; to the hundredth printed, as the accuracies are
    held = round(mean_gap, 2) >= 0 if smaller else mean_gap > 0
    parts = {
        f"(a) mean validation {mean_gap:+.2f}": held,
        f"(b) worst seed {min(gaps):+.2f} (>= -{TOLERANCE:.2f})": min(gaps) >= -TOLERANCE,
        "(c) size targets " + ", ".join(f"{k} {sizes[k]:.3f}" for k in TARGETS): all(
            sizes[k] >= v for k, v in TARGETS.items()
        ),
    }
    if smaller:
        size = {arm: _mean([x["weightless"]["weights_bytes"] for x in result["runs"][arm]])
                for arm in (reference, candidate)}  # fmt: skip
        said = f"(d) model {size[candidate]:.0f} bytes against {size[reference]:.0f}"
        parts[said] = size[candidate] < size[reference]
    said = "; ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in parts.items())
    return f"**{'adopt' if all(parts.values()) else keep}**: {said}."


def markdown(result: dict[str, Any], total_s: float) -> str:
    seeds = result["seeds"]
    dense_val = _mean([d["val"] for d in result["dense"]])
    dense_test = _mean([d["test"] for d in result["dense"]])
    lines = [
        f"{result['arch']} / {result['dataset']}, the `max` preset with k-means started linearly "
        "over each layer's surviving weights or over each sign's own range; each seed prunes "
        f"once and each start clusters and encodes from there. Seeds {', '.join(map(str, seeds))}"
        + (" (**fewer than 3: a direction, not a claim**)" if len(seeds) < 3 else "")
        + f"; dense validation {dense_val:.2f} %, dense test {dense_test:.2f} % (means). "
        "Ratios are weights-only, against Deep Compression-best on the same clustered weights "
        "(which each start changes too). 'Clustered' is the accuracy after the first clustering "
        "and its retraining, before any table. Validation decides; test is scored only.",
        "",
        f"Rule (written before the run): {verdict(result)}",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        "| start | clustered val % | fc1 ratio | vs DC-best | model ratio | vs DC-best "
        "| val % | val per seed | test % | test per seed | DC-best test % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["runs"].items():
        if runs:
            clustered = _mean([x["accuracy_stages"]["clustered"] for x in runs])
            dc_test = _mean([x["deep_compression"]["test"] for x in runs])
            lines.append(f"| {name} | {clustered:.2f} | {cells(runs)} | {dc_test:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    args = ap.parse_args(argv)
    variants_main(
        args,
        argv,
        script=__file__,
        variants=VARIANTS,
        section="cluster_init",
        title="Where k-means starts: linear or sign-aware (LeNet-5 / MNIST, `max`)",
        markdown=markdown,
        extra=lambda result: {"verdict": verdict(result)},
    )


if __name__ == "__main__":
    main()
