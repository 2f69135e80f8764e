"""The checks that need a GPU, one command (issue 14): ``bash benchmarks/gpu_check.sh``.

This script is its last step: one LeNet-5 pipeline on CUDA (train a reference, compress it
with the ``default`` preset, decode the file on the GPU) with the same run on the CPU beside it,
so the section says what the GPU bought. The CUDA tests and the CUDA decode benchmark run before
it, from the shell script. Writes the ``gpu-check`` section of BENCHMARKS.md; refuses to run
without a CUDA device, so that section only ever holds figures measured on one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import fresh_model, test_accuracy, train_dense
from _results import command_line, record

from weightless_core.config.presets import settings_for
from weightless_core.fileformat import load
from weightless_core.io.data import Dataset, load_dataset
from weightless_core.method.pipeline import compress


def one_device(
    device: str, data: Dataset, epochs: int, out_dir: Path, arch: str = "lenet-5"
) -> dict[str, float | str]:
    """Dense training, the ``default`` preset and a decode, all on ``device``; seconds each."""
    state, _, trained = train_dense(arch, data, epochs, device=device)
    start = time.perf_counter()
    model = fresh_model(arch, data, state)
    result = compress(model, data, settings_for("default", device=device))
    compressed = time.perf_counter() - start
    path = out_dir / f"{arch}-{device}.wlss"
    result.save(path)
    load(path, device=device)  # warm-up: kernels compiled, tables in memory
    start = time.perf_counter()
    state = load(path, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    decoded = time.perf_counter() - start
    rebuilt = fresh_model(arch, data, {k: v.cpu() for k, v in state.items()})
    return {
        "device": device,
        "train_s": round(trained, 3),
        "compress_s": round(compressed, 2),
        "decode_s": round(decoded, 6),
        "weights_ratio": round(result.report.weights_paper_ratio, 1),
        "test": round(test_accuracy(rebuilt, data), 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2, help="dense LeNet-5 epochs")
    ap.add_argument("--out-dir", type=Path, default=Path(".cache/gpu-check"))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device; run this where a GPU is lent")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist")
    rows = [one_device(d, data, args.epochs, args.out_dir) for d in ("cuda", "cpu")]
    gpu, cpu = rows
    lines = [
        f"LeNet-5 on MNIST, dense training for {args.epochs} epochs, then the `default` preset, "
        f"then a decode of the file, on `{torch.cuda.get_device_name(0)}` and on this "
        "machine's CPU in the same process. Test accuracy is of the decoded model.",
        "",
        "| device | dense training s | compress s | decode s | weights ratio | test acc. |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['train_s']} | {r['compress_s']} | {r['decode_s']} | "
            f"{r['weights_ratio']}x | {r['test']}% |"
        )
    lines += [
        "",
        f"CUDA against CPU: compress {cpu['compress_s'] / gpu['compress_s']:.1f}x faster, "
        f"decode {cpu['decode_s'] / gpu['decode_s']:.1f}x faster.",
    ]
    record(
        "gpu-check",
        title="GPU check: one LeNet-5 pipeline on CUDA against the CPU",
        command=command_line(__file__, argv),
        markdown="\n".join(lines),
        data={"rows": rows, "device": torch.cuda.get_device_name(0)},
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
