"""Regenerate ``golden_v1.wlss``, the version-1 file every future release must still read.

Run ``python tests/data/make_golden.py``. The inputs are fixed (seeded generator, explicit
codebooks and codes, so k-means changes cannot move them). Do not regenerate the committed file
casually: it exists to catch changes in how version-1 files are read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from weightless_core.fileformat import save, to_bytes
from weightless_core.layer import EncodedLayer, encode_layer

GOLDEN = Path(__file__).with_name("golden_v1.wlss")
METADATA = {"arch": "golden-mlp", "note": "format v1 golden file", "sizes": [12, 10, 4]}


def dense_weights() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]]:
    """name -> (pruned float32 weight, codebook, codes, r, t, seed): the encoder's inputs."""
    rng = np.random.default_rng(20240601)
    out = {}
    for name, shape, r, t, seed in (
        ("fc1.weight", (10, 12), 2, 5, 7),
        ("fc2.weight", (4, 10), 3, 8, 11),
    ):
        codebook = np.linspace(-1.0, 1.0, 1 << r, dtype=np.float32)  # no centroid is 0
        codes = rng.integers(0, 1 << r, size=shape)
        weight = codebook[codes]
        weight[rng.random(shape) < 0.8] = 0.0  # 80 % pruned
        weight[0, 0] = codebook[codes[0, 0]]  # keep at least one non-zero
        out[name] = (weight, codebook, codes, r, t, seed)
    return out


def build() -> dict[str, EncodedLayer | torch.Tensor]:
    """The golden entries, in file order."""
    layers = {
        name: encode_layer(w, r=r, t=t, seed=seed, codebook=cb, codes=codes)
        for name, (w, cb, codes, r, t, seed) in dense_weights().items()
    }
    return {
        "fc1.weight": layers["fc1.weight"],
        "fc1.bias": torch.arange(10, dtype=torch.float32) / 8 - 0.5,
        "fc2.weight": layers["fc2.weight"],
        "fc2.bias": torch.tensor([0.25, -0.5, 1.0, -2.0], dtype=torch.bfloat16),
    }


def golden_bytes() -> bytes:
    return to_bytes(build(), metadata=METADATA)


if __name__ == "__main__":
    size = save(GOLDEN, build(), metadata=METADATA)
    print(f"wrote {GOLDEN} ({size} bytes)", file=sys.stderr)
