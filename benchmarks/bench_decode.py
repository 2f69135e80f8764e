"""Dense decode of a VGG-16 fc6-shaped layer against the memory-bandwidth floor, per structure.

    python benchmarks/bench_decode.py [--runs N] [--no-record]   # about 3 minutes on 2 CPUs

The layer: 25088 x 4096 float32, 4 % kept, r=4, t=7, encoded once per structure (Bloomier,
binary fuse 3-wise and 4-wise). For each, interleaved runs time:

* the floor: allocating the same dense float32 array and writing it once (``np.empty`` +
  ``fill`` on CPU; ``torch.empty`` + ``fill_`` on CUDA), which no decode can beat;
* ``EncodedLayer.decode()`` (numba kernels on unpacked cells, the CPU default);
* the previous kernel reading the packed stream (same process: what the unpacked cells gained);
* ``EncodedLayer.to_torch(backend="torch")``: the torch kernels on CPU, and on CUDA when a GPU
  is present (table copied to the device and decoded there; synchronised before the clock
  stops).

Targets (issue 7): <= 0.5 s on this 2-CPU machine and <= 3x the floor. Writes the ``decode``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, command_line, machine_info, record

sys.path.insert(0, str(ROOT))
from weightless_core.method.layer import encode_layer

FC6 = (25088, 4096)
KEEP = 0.04
R, T = 4, 7
STRUCTURES = ("bloomier", "fuse3", "fuse4")
TARGET_S = 0.5
TARGET_FLOOR_RATIO = 3.0


def fc6_weight(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    numel = shape[0] * shape[1]
    weight = np.zeros(numel, dtype=np.float32)
    kept = np.flatnonzero(rng.random(numel, dtype=np.float32) < KEEP)
    weight[kept] = rng.standard_normal(kept.size, dtype=np.float32) + np.float32(0.01)
    weight[kept[weight[kept] == 0]] = 1.0
    return weight.reshape(shape)


def packed_decode(layer) -> np.ndarray:
    """The decode kernel before unpacked cells (two word loads and a shift per cell)."""
    out = np.empty(layer.numel, dtype=np.float32)
    layer.structure.decode_packed(out, layer.codebook)
    return out.reshape(layer.shape)


def cpu_floor(shape: tuple[int, int]) -> None:
    np.empty(shape, dtype=np.float32).fill(1.0)


def cuda_floor(shape: tuple[int, int]) -> None:
    torch.empty(shape, dtype=torch.float32, device="cuda").fill_(1.0)
    torch.cuda.synchronize()


def timed(fn: Callable[[], object], sync: bool = False) -> float:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    del out
    return seconds


def bench(runs: int, cuda: bool, shape: tuple[int, int] = FC6) -> dict:
    weight = fc6_weight(shape)
    layers = {}
    for kind in STRUCTURES:
        t0 = time.perf_counter()
        layers[kind] = encode_layer(weight, r=R, t=T, seed=0, structure=kind)
        print(f"{kind}: encoded in {time.perf_counter() - t0:.1f} s", flush=True)
    del weight
    # Correctness first: every path gives the numba decode's bits.
    for kind, layer in layers.items():
        ref = layer.decode()
        assert np.array_equal(packed_decode(layer), ref), kind
        sample = slice(0, 2_000_000)
        got = layer.to_torch("cpu", backend="torch")
        assert np.array_equal(got.numpy().reshape(-1)[sample], ref.reshape(-1)[sample]), kind
        if cuda:
            on_gpu = layer.to_torch("cuda").cpu().numpy()
            assert np.array_equal(on_gpu, ref), kind
        del ref, got
    paths: dict[str, tuple[Callable[[], object], bool]] = {
        "floor (CPU)": (lambda: cpu_floor(shape), False)
    }
    if cuda:
        paths["floor (CUDA)"] = (lambda: cuda_floor(shape), True)
    for kind, layer in layers.items():
        paths[f"{kind}: decode()"] = (layer.decode, False)
        paths[f"{kind}: packed stream (before)"] = (lambda lay=layer: packed_decode(lay), False)
        paths[f"{kind}: torch CPU"] = (lambda lay=layer: lay.to_torch(backend="torch"), False)
        if cuda:
            paths[f"{kind}: torch CUDA"] = (lambda lay=layer: lay.to_torch("cuda"), True)
    for fn, sync in paths.values():  # warm: compiled, tables and allocator primed
        timed(fn, sync)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(runs):
        for name, (fn, sync) in paths.items():
            if "torch CPU" in name and i >= max(1, runs // 3):
                continue  # seconds per run; a third of the runs say enough
            times[name].append(timed(fn, sync))
        print(f"run {i + 1}/{runs}", flush=True)
    return {
        "shape": list(shape),
        "r": R,
        "t": T,
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "layers": {
            kind: {
                "nnz": lay.nnz,
                "table_bytes": lay.structure.table_nbytes,
                "false_positives": lay.false_positives,
            }
            for kind, lay in layers.items()
        },
        "seconds": times,
        "median": {k: float(np.median(v)) for k, v in times.items()},
        "best": {k: min(v) for k, v in times.items()},
    }


def render(res: dict, runs: int) -> str:
    med, best = res["median"], res["best"]
    numel = res["shape"][0] * res["shape"][1]
    out_bytes = numel * 4
    lines = [
        f"Medians of {runs} interleaved runs (the torch CPU rows: {max(1, runs // 3)}); each "
        "ratio is against the floor measured in the same run on the same device. Throughput "
        "is positions decoded per second and the bytes of the dense output written per second.",
        "",
        "| what | median s | best s | M positions/s | output GB/s | vs floor | "
        f"<= {TARGET_S:g} s | <= {TARGET_FLOOR_RATIO:g}x floor |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    for name in res["seconds"]:
        m = med[name]
        floor = med["floor (CUDA)" if "CUDA" in name else "floor (CPU)"]
        is_floor = name.startswith("floor")
        ratio = m / floor
        lines.append(
            f"| {name} | {m:.3f} | {best[name]:.3f} | {numel / m / 1e6:,.0f} | "
            f"{out_bytes / m / 1e9:.1f} | {ratio:.1f}x | "
            + (" | |" if is_floor else f"{yes(m <= TARGET_S)} | {yes(ratio <= 3)} |")
        )
    layer_notes = ", ".join(
        f"{k} {v['table_bytes'] / 2**20:.2f} MiB" for k, v in res["layers"].items()
    )
    nnz = next(iter(res["layers"].values()))["nnz"]
    lines += [
        "",
        f"{nnz:,} stored weights of {numel:,}; tables: {layer_notes}. "
        + (
            f"GPU: {res['device']}."
            if res["cuda"]
            else "No GPU on this machine: no CUDA rows (the same script adds them where "
            "`torch.cuda.is_available()`)."
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per path")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--shape", type=int, nargs=2, default=FC6, help="another layer shape (implies --no-record)"
    )
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    start = time.perf_counter()
    print(machine_info(), flush=True)
    res = bench(args.runs, torch.cuda.is_available(), shape)  # type: ignore[arg-type]
    markdown = render(res, args.runs)
    print(markdown)
    if not args.no_record and shape == FC6:
        record(
            "decode",
            title="Decode throughput: VGG-16 fc6 shape against the memory-bandwidth floor",
            command=command_line(__file__, argv),
            markdown=markdown,
            data={"runs": args.runs, **res},
        )
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
