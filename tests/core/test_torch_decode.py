"""The torch query and decode (CUDA when present, CPU here) against the numba kernels.

Every structure, cell widths on both sides of the unpacked-cell limits, chunk boundaries, and
the keys whose hashes exercise the sign bit: int64 stands in for uint64, so a wrong logical
shift or an overflowing product would show here as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.fileformat import load, save
from weightless_core.method.layer import encode_layer
from weightless_core.retrieval import STRUCTURES, BloomierFilter, RetrievalStructure, torch_decode
from weightless_core.retrieval.hashing import mix64

ALL = pytest.mark.parametrize("cls", list(STRUCTURES.values()), ids=list(STRUCTURES))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _built(cls: type[RetrievalStructure], t: int, seed: int, n: int = 2000, span: int = 60000):
    rng = np.random.default_rng(seed)
    keys = rng.choice(span, size=n, replace=False).astype(np.uint64)
    values = rng.integers(0, 1 << t, size=n, dtype=np.uint64).astype(np.uint32)
    return cls.build(keys, values, t=t, seed=seed), keys, values, rng


def test_mix_matches_the_reference_on_edge_values() -> None:
    edges = [0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]
    z = torch.tensor([torch_decode.signed(x) for x in edges], dtype=torch.int64)
    got = torch_decode.mix_(z.clone(), torch.empty_like(z))
    assert [int(v) % 2**64 for v in got] == [mix64(x) for x in edges]


@pytest.mark.parametrize("b", [1, 3, 2**16 + 1, 2**31 + 7, 2**32 - 1])
def test_mulhi32_is_exact(b: int) -> None:
    r = [0, 1, 2**16 - 1, 2**16, 2**31, 2**32 - 1, 123456789]
    got = torch_decode.mulhi32_(torch.tensor(r), b, torch.empty(len(r), dtype=torch.int64))
    assert got.tolist() == [(x * b) >> 32 for x in r]


@ALL
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t", [1, 6, 8, 9, 16, 17, 32])
def test_query_matches_numba(cls, device: str, t: int) -> None:
    s, keys, values, rng = _built(cls, t, seed=t)
    probe = np.concatenate([keys, rng.integers(0, 2**64, size=4000, dtype=np.uint64)])
    got = torch_decode.query(s, probe, device=device, chunk=997).cpu().numpy()
    np.testing.assert_array_equal(got[: keys.size], values)
    np.testing.assert_array_equal(got, s.query(probe).astype(np.int64))


@ALL
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("t", "k"), [(4, 4), (7, 16), (12, 8), (20, 2)])
def test_decode_matches_numba(cls, device: str, t: int, k: int) -> None:
    s, _, _, _ = _built(cls, t, seed=100 + t)
    codebook = np.linspace(-1, 1, k, dtype=np.float32)
    for numel, chunk in [(60000, None), (60000, 4096), (4097, 1024), (1, 7), (0, 5)]:
        expected = np.empty(numel, dtype=np.float32)
        s.decode_dense(expected, codebook)
        got = torch_decode.decode_dense(s, codebook, (numel,), device=device, chunk=chunk)
        assert got.dtype == torch.float32 and got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), expected)


@pytest.mark.parametrize("backend", ["auto", "numba", "torch"])
def test_layer_to_torch_backends_agree(backend: str) -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 200)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    layer = encode_layer(w, r=3, t=8, seed=1, structure="fuse4")
    got = layer.to_torch("cpu", backend=backend)  # type: ignore[arg-type]
    assert got.shape == (300, 200)
    np.testing.assert_array_equal(got.numpy(), layer.decode())


def test_bad_backend_and_missing_gpu_are_refused() -> None:
    layer = encode_layer(np.eye(8, dtype=np.float32), r=1, t=4, seed=0)
    with pytest.raises(InvalidInputError, match="backend must be"):
        layer.to_torch(backend="cupy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="chunk must be"):
        torch_decode.decode_dense(layer.structure, layer.codebook, (8, 8), chunk=0)
    with pytest.raises(InvalidInputError, match="not a torch device"):
        layer.to_torch("gpu0")
    with pytest.raises(InvalidInputError, match="cpu or cuda"):
        layer.to_torch("meta")
    with pytest.raises(InvalidInputError, match="int64"):
        torch_decode.query(layer.structure, torch.zeros(3, dtype=torch.int32))
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA device"):
            layer.to_torch("cuda")


def test_torch_decoding_dispatches_through_the_structure() -> None:
    """No table of kinds: a structure's own ``torch_lookup`` decodes it, and one without says so."""

    class NoTorch(BloomierFilter):
        torch_lookup = RetrievalStructure.torch_lookup

    s, _, _, _ = _built(NoTorch, 6, seed=1, n=50, span=500)
    with pytest.raises(InvalidInputError, match="no torch decoder for structure 'bloomier'"):
        torch_decode.decode_dense(s, np.zeros(4, dtype=np.float32), (10,))
    with pytest.raises(InvalidInputError, match="no torch decoder"):
        torch_decode.query(s, np.arange(3, dtype=np.uint64))


def test_load_decodes_the_same_with_either_backend(tmp_path) -> None:
    rng = np.random.default_rng(5)
    state = {}
    for i, structure in enumerate(STRUCTURES):
        w = rng.standard_normal((64, 50)).astype(np.float32)
        w[rng.random(w.shape) < 0.8] = 0
        state[f"l{i}.weight"] = encode_layer(w, r=2, t=7, seed=i, structure=structure)
    state["l0.bias"] = torch.arange(64, dtype=torch.float32)
    path = tmp_path / "m.wlss"
    save(path, state)
    numba_state = load(path, backend="numba")
    for device in DEVICES:
        torch_state = load(path, device=device, backend="torch")
        assert list(torch_state) == list(numba_state)
        for name, tensor in numba_state.items():
            assert torch_state[name].device.type == device
            torch.testing.assert_close(torch_state[name].cpu(), tensor, rtol=0, atol=0)
