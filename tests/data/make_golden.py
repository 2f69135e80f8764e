"""Regenerate ``golden_v1.wlss``, ``golden_v2_dc.wlss``, ``golden_v3_fuse.wlss``,
``golden_v4_ribbon.wlss``, ``golden_v5_veto.wlss`` and ``golden_v6_context.wlss``, files every
release must still read.

Run ``python tests/data/make_golden.py``. The inputs are fixed (seeded generator, explicit
codebooks and codes, so k-means changes cannot move them). Do not regenerate the committed files
casually: they exist to catch changes in how version-1, -2 and -3 files are read. The v2 file
holds Deep Compression records (kind 4) beside a Bloomier layer, plain tensors and metadata; the
v3 file binary fuse layers (3-wise and 4-wise, one and several start segments) beside a
Bloomier layer, a plain tensor and metadata; the v4 file ribbon layers (the smallest table and a
larger one) and kind-5 layers with liveness bitmaps (ribbon and binary fuse), a plain tensor and
metadata; the v5 file kind-6 layers (a veto table beside the main table) with and without
liveness, in Bloomier, binary fuse and ribbon, vetoing all or half of the false positives; the
v6 file kind-7 layers (context-coded) over the whole matrix view and over the live grid, with
runs of kept weights, with none kept, beside a plain tensor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from weightless_core.baselines.context_coded import ContextCodedLayer, context_code
from weightless_core.baselines.deep_compression import DeepCompressedLayer, deep_compress
from weightless_core.fileformat import save, to_bytes
from weightless_core.method.layer import EncodedLayer, encode_layer

GOLDEN = Path(__file__).with_name("golden_v1.wlss")
METADATA = {"arch": "golden-mlp", "note": "format v1 golden file", "sizes": [12, 10, 4]}
GOLDEN_V2 = Path(__file__).with_name("golden_v2_dc.wlss")
METADATA_V2 = {"arch": "golden-dc", "note": "format v2 golden file: Deep Compression records"}
GOLDEN_V3 = Path(__file__).with_name("golden_v3_fuse.wlss")
METADATA_V3 = {"arch": "golden-fuse", "note": "format v3 golden file: binary fuse layers"}
GOLDEN_V4 = Path(__file__).with_name("golden_v4_ribbon.wlss")
METADATA_V4 = {"arch": "golden-ribbon", "note": "format v4 golden file: ribbon and liveness"}
GOLDEN_V5 = Path(__file__).with_name("golden_v5_veto.wlss")
METADATA_V5 = {"arch": "golden-veto", "note": "format v5 golden file: veto tables"}
GOLDEN_V6 = Path(__file__).with_name("golden_v6_context.wlss")
METADATA_V6 = {"arch": "golden-context", "note": "format v6 golden file: context-coded layers"}


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


def dc_weights() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """name -> (pruned float32 weight, codebook, codes, r): the Deep Compression inputs.

    Each tensor has a long run of zeros, so the gap index needs filler entries (gaps above 255
    at 8 bits for the conv tensor, above 31 at 5 bits for the fully connected one).
    """
    rng = np.random.default_rng(20250101)
    out = {}
    for name, shape, r, zeros, run in (
        ("conv.weight", (6, 4, 4, 4), 3, 0.8, (10, 300)),
        ("fc.weight", (12, 40), 2, 0.9, (100, 200)),
    ):
        codebook = np.linspace(-1.0, 1.0, 1 << r, dtype=np.float32)  # no centroid is 0
        codes = rng.integers(0, 1 << r, size=shape)
        weight = codebook[codes]
        weight[rng.random(shape) < zeros] = 0.0
        weight.reshape(-1)[run[0] : run[1]] = 0.0
        out[name] = (weight, codebook, codes, r)
    return out


def build_v2() -> dict[str, DeepCompressedLayer | EncodedLayer | torch.Tensor]:
    """The version-2 golden entries, in file order."""
    dc = {
        name: deep_compress(w, r=r, codebook=cb, codes=codes)
        for name, (w, cb, codes, r) in dc_weights().items()
    }
    w, cb, codes, r, t, seed = dense_weights()["fc2.weight"]
    return {
        "conv.weight": dc["conv.weight"],
        "conv.bias": torch.arange(6, dtype=torch.float32) / 4,
        "fc.weight": dc["fc.weight"],
        "fc2.weight": encode_layer(w, r=r, t=t, seed=seed, codebook=cb, codes=codes),
        "empty.weight": deep_compress(
            np.zeros((2, 3), dtype=np.float32),
            r=1,
            codebook=np.array([-0.5, 0.5], dtype=np.float32),
            codes=np.zeros((2, 3), dtype=np.int64),
        ),
    }


def golden_v2_bytes() -> bytes:
    return to_bytes(build_v2(), metadata=METADATA_V2)


def fuse_weights() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int, str]]:
    """name -> (pruned float32 weight, codebook, codes, r, t, seed, structure) of the v3 file.

    The two small tensors of ``dense_weights`` (one start segment for 3-wise, several for
    4-wise) and a larger one in each structure (several start segments for both).
    """
    small = dense_weights()
    rng = np.random.default_rng(20260301)
    r = 3
    codebook = np.linspace(-1.0, 1.0, 1 << r, dtype=np.float32)  # no centroid is 0
    codes = rng.integers(0, 1 << r, size=(6, 4, 5, 5))
    weight = codebook[codes]
    weight[rng.random(weight.shape) < 0.6] = 0.0  # 60 % pruned: about 240 kept
    return {
        "fc1.weight": (*small["fc1.weight"], "fuse3"),
        "conv.weight": (weight, codebook, codes, r, 7, 5, "fuse3"),
        "conv4.weight": (weight, codebook, codes, r, 9, 6, "fuse4"),
        "fc2.weight": (*small["fc2.weight"], "fuse4"),
        "fc2b.weight": (*small["fc2.weight"], "bloomier"),
    }


def build_v3() -> dict[str, EncodedLayer | torch.Tensor]:
    """The version-3 golden entries, in file order."""
    out: dict[str, EncodedLayer | torch.Tensor] = {
        name: encode_layer(w, r=r, t=t, seed=seed, codebook=cb, codes=codes, structure=structure)
        for name, (w, cb, codes, r, t, seed, structure) in fuse_weights().items()
    }
    out["fc1.bias"] = torch.arange(10, dtype=torch.float32) / 16 - 0.25
    return out


def golden_v3_bytes() -> bytes:
    return to_bytes(build_v3(), metadata=METADATA_V3)


def live_weight() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(pruned float32 weight, codebook, codes, r) of shape (9, 3, 2, 2), 70 % pruned, with
    dead rows (output units 0, 4, 8) and dead columns (inputs 1 and 11 of 12)."""
    rng = np.random.default_rng(20261201)
    r = 2
    codebook = np.array([-0.75, -0.25, 0.5, 1.0], dtype=np.float32)  # no centroid is 0
    codes = rng.integers(0, 1 << r, size=(9, 3, 2, 2))
    weight = codebook[codes]
    weight[rng.random(weight.shape) < 0.7] = 0.0
    matrix = weight.reshape(9, 12)
    matrix[[0, 4, 8], :] = 0.0
    matrix[:, [1, 11]] = 0.0
    matrix[1, 0] = matrix[2, 2] = codebook[1]  # every other row and column keeps a weight
    for row in (3, 5, 6, 7):
        matrix[row, row] = codebook[2]
    matrix[1, [3, 4, 6, 7, 8, 9, 10]] = codebook[3]
    return weight, codebook, codes, r


def build_v4() -> dict[str, EncodedLayer | torch.Tensor]:
    """The version-4 golden entries, in file order."""
    small = dense_weights()["fc1.weight"]
    big = fuse_weights()["conv.weight"]
    lw, lcb, lcodes, lr = live_weight()
    return {
        "small.weight": _encode(*small[:5], seed=3, structure="ribbon"),
        "conv.weight": _encode(*big[:5], seed=9, structure="ribbon"),
        "live.weight": _encode(lw, lcb, lcodes, lr, 6, seed=2, structure="ribbon", live=True),
        "live3.weight": _encode(lw, lcb, lcodes, lr, 5, seed=4, structure="fuse3", live=True),
        "live.bias": torch.arange(9, dtype=torch.float32) / 4 - 1,
    }


def _encode(w, cb, codes, r, t, *, seed, structure, live=False, **veto) -> EncodedLayer:
    return encode_layer(
        w, r=r, t=t, seed=seed, codebook=cb, codes=codes, structure=structure, liveness=live,
        **veto,
    )  # fmt: skip


def veto_harm(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A fixed cost per position, so which half of the false positives is vetoed is pinned."""
    return np.random.default_rng(seed).random(shape)


def build_v5() -> dict[str, EncodedLayer | torch.Tensor]:
    """The version-5 golden entries, in file order."""
    small = dense_weights()["fc1.weight"]
    big = fuse_weights()["conv.weight"]
    lw, lcb, lcodes, lr = live_weight()
    half = {"veto_share": 0.5}
    return {
        "small.weight": _encode(*small[:3], 2, 4, seed=3, structure="bloomier", veto_share=1.0),
        "conv.weight": _encode(
            *big[:4], 5, seed=9, structure="fuse3", **half, veto_harm=veto_harm(big[0].shape, 1)
        ),
        "live.weight": _encode(
            lw,
            lcb,
            lcodes,
            lr,
            4,
            seed=2,
            structure="ribbon",
            live=True,
            **half,
            veto_harm=veto_harm(lw.shape, 2),
        ),
        "live.bias": torch.arange(9, dtype=torch.float32) / 8,
    }


def golden_v5_bytes() -> bytes:
    return to_bytes(build_v5(), metadata=METADATA_V5)


def runs_weight() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(pruned float32 weight, codebook, codes, r) of shape (16, 48): kept weights in short
    runs, so every position context is used (at the line width the writer picks, 2)."""
    rng = np.random.default_rng(20261206)
    codebook = np.array([-0.5, 0.5], dtype=np.float32)
    codes = rng.integers(0, 2, size=(16, 48))
    kept = np.zeros((16, 48), dtype=bool)
    for row in range(16):
        if row and rng.random() < 0.5:
            kept[row] = kept[row - 1]
        else:
            for start in rng.integers(0, 44, size=3):
                kept[row, start : start + rng.integers(1, 5)] = True
    return np.where(kept, codebook[codes], 0.0).astype(np.float32), codebook, codes, 1


def _context(w, cb, codes, r, *, live: bool) -> ContextCodedLayer:
    layer = context_code(w, r=r, codebook=cb, codes=codes, live=live)
    assert layer is not None
    return layer


def build_v6() -> dict[str, ContextCodedLayer | torch.Tensor]:
    """The version-6 golden entries, in file order."""
    conv = dc_weights()["conv.weight"]
    lw, lcb, lcodes, lr = live_weight()
    return {
        "conv.weight": _context(*conv, live=False),
        "runs.weight": _context(*runs_weight(), live=False),
        "live.weight": _context(lw, lcb, lcodes, lr, live=True),
        "live.bias": torch.arange(9, dtype=torch.float32) / 16,
        "empty.weight": _context(
            np.zeros((2, 3), dtype=np.float32),
            np.array([-0.5, 0.5], dtype=np.float32),
            np.zeros((2, 3), dtype=np.int64),
            1,
            live=False,
        ),
    }


def golden_v6_bytes() -> bytes:
    return to_bytes(build_v6(), metadata=METADATA_V6)


def golden_v4_bytes() -> bytes:
    return to_bytes(build_v4(), metadata=METADATA_V4)


if __name__ == "__main__":
    size = save(GOLDEN, build(), metadata=METADATA)
    print(f"wrote {GOLDEN} ({size} bytes)", file=sys.stderr)
    size = save(GOLDEN_V2, build_v2(), metadata=METADATA_V2)
    print(f"wrote {GOLDEN_V2} ({size} bytes)", file=sys.stderr)
    size = save(GOLDEN_V3, build_v3(), metadata=METADATA_V3)
    print(f"wrote {GOLDEN_V3} ({size} bytes)", file=sys.stderr)
    size = save(GOLDEN_V4, build_v4(), metadata=METADATA_V4)
    print(f"wrote {GOLDEN_V4} ({size} bytes)", file=sys.stderr)
    size = save(GOLDEN_V5, build_v5(), metadata=METADATA_V5)
    print(f"wrote {GOLDEN_V5} ({size} bytes)", file=sys.stderr)
    size = save(GOLDEN_V6, build_v6(), metadata=METADATA_V6)
    print(f"wrote {GOLDEN_V6} ({size} bytes)", file=sys.stderr)
