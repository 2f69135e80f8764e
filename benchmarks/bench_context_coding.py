"""How far below the entropy bound could a context-adaptive (CABAC-style) coder store a layer?

    python benchmarks/bench_context_coding.py --threads 2   # 3 runs, seed 0 (about 6 min)
    python benchmarks/bench_context_coding.py --quick       # digits

Why: the entropy bound the reports give (``baselines.sparse_index_bound_bits``: ``N·H(d) +
n·H(codes)``, over the live grid after two bitmaps where that is smaller) is the floor for a
coder that treats positions as independent and alike. A context-adaptive arithmetic coder, the
kind DeepCABAC uses, can go below it where positions are not alike: an input pixel that most
hidden units read, a hidden unit that reads many inputs. This measures how much, on the
pruned, clustered weights of real runs (LeNet-300-100 `max` on MNIST and Fashion-MNIST, LeNet-5
`default` on MNIST, seed 0), by the ideal code length of adaptive coders (Krichevsky-Trofimov
estimators, so every count is learnt on the way: what an arithmetic coder would write, to
within a few bytes, with no side information):

* positions in the live grid, after the two liveness bitmaps: one adaptive bit model for
  all of it, one per column (input), one per row (output unit), or one for positions after a
  kept one and one for those after a pruned one (row-major: runs, as in CABAC's
  significance contexts);
* codes, one adaptive model over all kept weights, or one per row, or one per column, or
  (since 2026-12-06) one per pair of the left and upper neighbours' codes (pruned counting
  as a code of its own), in the lines of the kind-7 coder's width: neighbouring weights of a
  first layer read neighbouring pixels, and may share a sign. The kind-7 coder codes codes
  with one model; this says what a code context would add.

The best of each is the *context coder*. If it is close to the bound, the bound is a fair
stand-in for the strongest sparse coder, and a table that beats the bound beats that coder.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import gammaln

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, bench_parser, fresh_model, train_dense, write_quick
from _results import command_line, record

from weightless_core import compress, load_dataset, settings_for
from weightless_core.baselines.context_coded import context_code
from weightless_core.baselines.strongest import deep_compression_bits, sparse_index_bound_bits

RUNS = (("lenet-300-100", "mnist", "max"), ("lenet-300-100", "fashion-mnist", "max"),
        ("lenet-5", "mnist", "default"))  # fmt: skip
SECTION = "context_coding"
LN2 = math.log(2)


def kt_binary_bits(ones: np.ndarray, total: np.ndarray) -> float:
    """Bits an adaptive (KT) binary model writes for each context's sequence, summed: with
    ``n1`` ones among ``n``, ``-log2(Γ(n0+½)Γ(n1+½) / (π Γ(n+1)))`` whatever their order."""
    zeros = total - ones
    nats = np.log(np.pi) + gammaln(total + 1) - gammaln(zeros + 0.5) - gammaln(ones + 0.5)
    return float(nats.sum() / LN2)


def kt_symbol_bits(counts: np.ndarray) -> float:
    """The same for ``k``-symbol sequences, one row of ``counts`` per context (Dirichlet ½)."""
    counts = np.atleast_2d(counts).astype(np.float64)
    k = counts.shape[1]
    n = counts.sum(1)
    nats = gammaln(n + k / 2) - gammaln(k / 2) + k * gammaln(0.5) - gammaln(counts + 0.5).sum(1)
    return float(nats[n > 0].sum() / LN2)


def _after_previous_bits(grid: np.ndarray) -> float:
    """Positions in row-major order, each coded by one of two adaptive models: the one for
    positions after a kept one, or after a pruned one (CABAC's significance context, reduced to
    its nearest neighbour): runs of kept weights, as a convolution's kernels make, cost less."""
    flat = grid.ravel()
    prev = np.concatenate([[False], flat[:-1]])
    ones = np.array([(flat & ~prev).sum(), (flat & prev).sum()])
    total = np.array([(~prev).sum(), prev.sum()])
    return kt_binary_bits(ones, total)


def _by_neighbour_codes_bits(codes: np.ndarray, width: int, k: int) -> float:
    """Codes of the kept weights (``codes``: the matrix, -1 where pruned), each by one of
    ``(k + 1)**2`` adaptive models chosen by its left and upper neighbours' codes in lines of
    ``width`` within a row (the kind-7 coder's geometry; none across a line or row start)."""
    rows, cols = np.nonzero(codes >= 0)
    at_line_start = cols % width == 0
    left = np.where(at_line_start, -1, codes[rows, np.maximum(cols - 1, 0)])
    up = np.where(cols < width, -1, codes[rows, np.maximum(cols - width, 0)])
    context = (left + 1) * (k + 1) + (up + 1)
    counts = np.zeros(((k + 1) ** 2, k))
    np.add.at(counts, (context, codes[rows, cols]), 1)
    return kt_symbol_bits(counts)


def layer_bits(weight: np.ndarray) -> dict[str, Any]:
    """The bound and each adaptive coder's bits for one pruned, clustered tensor (rows are
    output units; every other axis is flattened into columns)."""
    w = weight.reshape(weight.shape[0], -1)
    mask = w != 0
    values, codes = np.unique(w[mask], return_inverse=True)
    k = len(values)
    code_counts = np.bincount(codes, minlength=k)
    rows, cols = mask.any(1), mask.any(0)
    grid = mask[rows][:, cols]
    grid_codes = np.zeros(grid.shape, dtype=np.int64)
    grid_codes[grid] = np.searchsorted(values, w[rows][:, cols][grid])
    bitmaps = mask.shape[0] + mask.shape[1]
    positions = {
        "one model": bitmaps + kt_binary_bits(np.array([grid.sum()]), np.array([grid.size])),
        "per column": bitmaps + kt_binary_bits(grid.sum(0), np.full(grid.shape[1], grid.shape[0])),
        "per row": bitmaps + kt_binary_bits(grid.sum(1), np.full(grid.shape[0], grid.shape[1])),
        "by the previous position": bitmaps + _after_previous_bits(grid),
    }

    def per(axis: int) -> np.ndarray:
        n = grid.shape[1 - axis]
        out = np.zeros((n, k))
        idx = np.nonzero(grid)[1 - axis]
        np.add.at(out, (idx, grid_codes[grid]), 1)
        return out

    code_bits = {
        "one model": kt_symbol_bits(code_counts),
        "per row": kt_symbol_bits(per(1)),
        "per column": kt_symbol_bits(per(0)),
    }
    codebook = 32 * k  # float32 centroids, counted alike by all three
    best_pos = min(positions, key=positions.get)
    flat = np.flatnonzero(mask)  # row-major, as Deep Compression runs over the tensor
    r = max(1, (k - 1).bit_length())
    table = np.zeros(1 << r, dtype=np.float32)
    table[:k] = values
    all_codes = np.zeros(w.shape, dtype=np.int64)
    all_codes[mask] = codes
    coder = context_code(weight, r=r, codebook=table, codes=all_codes.reshape(weight.shape))
    width = 1 if coder is None else coder.width
    code_bits["by the left and upper codes"] = _by_neighbour_codes_bits(
        np.where(mask, all_codes, -1), width, k
    )
    best_codes = min(code_bits, key=code_bits.get)
    return {
        "shape": list(weight.shape),
        "kept": int(mask.sum()),
        "live": list(grid.shape),
        "dc_best_bits": deep_compression_bits(flat, codes, k) + codebook,
        "bound_bits": float(sparse_index_bound_bits(mask, code_counts)) + codebook,
        "positions_bits": positions,
        "codes_bits": code_bits,
        "context_bits": positions[best_pos] + code_bits[best_codes] + codebook,
        "context_models": f"positions {best_pos}, codes {best_codes}",
        # the real coder (file format kind 7): stream, codebook of 2**r entries, bitmaps
        "coder_bits": None if coder is None else 8 * coder.paper_nbytes,
        "coder_width": None if coder is None else coder.width,
    }


def measure(arch: str, data_name: str, preset: str, *, seed: int, quick: bool) -> dict[str, Any]:
    data = load_dataset(data_name)
    epochs = 2 if quick else DENSE_EPOCHS[(arch, data_name)]
    state, _val, _s = train_dense(arch, data, epochs, seed=seed, cache=not quick)
    settings = settings_for(preset, seed=seed)
    if quick:
        settings = settings.with_(prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1)
    result = compress(fresh_model(arch, data, state), data, settings)
    params = dict(result.model.named_parameters())  # as the file decodes them
    encoded = [row.name for row in result.report.weight_rows if row.encoded]
    layers = {name: layer_bits(params[name].detach().cpu().numpy()) for name in encoded}
    return {"arch": arch, "dataset": data.name, "preset": preset, "seed": seed, "layers": layers}


def markdown(runs: list[dict[str, Any]], total_s: float) -> str:
    lines = [
        "Bytes of each encoded tensor of the final model (as its file decodes it, a table's "
        "false positives included): Deep Compression-best, the entropy bound the reports "
        "give, and the best adaptive context coder (positions of the live grid after its "
        "bitmaps with one model, one per row or per column, or two by whether the position "
        "before was kept; codes with one model, one "
        "per row or per column, or one per pair of the left and upper neighbours' codes in "
        "lines of the kind-7 coder's width; ideal arithmetic-coded lengths). Seed 0. "
        "*kind-7 coder*: the bytes the coder in the file format (`baselines.context_coded`, "
        "from 2026-12-06) "
        "writes for the same weights (its stream, a codebook of 2**r entries, its bitmaps), "
        "and the line width it found. *Codes*: the ideal bytes of the kept weights' codes with "
        "one model (as kind 7 codes them) and by their neighbours' codes.",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        "| model | data | preset | tensor | kept | live grid | DC-best | bound | context coder "
        "| its models | context / bound | kind-7 coder (width) | kind-7 / DC-best "
        "| codes: one model / by neighbours' codes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for name, row in run["layers"].items():
            dc, bound, ctx = row["dc_best_bits"] / 8, row["bound_bits"] / 8, row["context_bits"] / 8
            real = row.get("coder_bits")
            coder = "-" if real is None else f"{real / 8:,.0f} ({row['coder_width']})"
            gain = "-" if real is None else f"{real / 8 / dc:.3f}"
            lines.append(
                f"| {run['arch']} | {run['dataset']} | {run['preset']} | {name} | {row['kept']:,} "
                f"| {row['live'][0]} x {row['live'][1]} | {dc:,.0f} | {bound:,.0f} | {ctx:,.0f} "
                f"| {row['context_models']} | {ctx / bound:.3f} | {coder} | {gain} "
                f"| {_codes_cell(row['codes_bits'])} |"
            )
    return "\n".join(lines)


def _codes_cell(code_bits: dict[str, float]) -> str:
    """One model's and the neighbour-code models' bytes ('-' for the latter in older records)."""
    by = code_bits.get("by the left and upper codes")
    one = f"{code_bits['one model'] / 8:,.0f}"
    return f"{one} / -" if by is None else f"{one} / {by / 8:,.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.quick:
        runs = [measure("lenet-300-100", "digits", "max", seed=0, quick=True)]
        write_quick(args.out_dir, SECTION, markdown(runs, time.perf_counter() - start))
        return
    runs = []
    for arch, data_name, preset in RUNS:
        runs.append(measure(arch, data_name, preset, seed=0, quick=False))
        print(markdown(runs[-1:], time.perf_counter() - start).splitlines()[-1], flush=True)
    total = time.perf_counter() - start
    record(
        SECTION,
        title="A context-adaptive coder against the entropy bound (seed 0)",
        command=command_line(__file__, argv),
        markdown=markdown(runs, total),
        data={"runs": runs, "total_seconds": total},
    )


if __name__ == "__main__":
    main()
