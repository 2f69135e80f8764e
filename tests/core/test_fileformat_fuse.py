"""Format version 3: binary fuse layers (retrieval structures 2 and 3) in kind-1 records.

A pure-Python reader written from docs/format.md alone (``_ref_*``, the step tables parsed from
the document itself) decodes the golden v3 file, which holds all three structures, so the
document, the golden bytes and the library are checked against each other.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from goldenkit import assert_cuts_and_flips_detected, header_version, make_golden

from weightless_core import fileformat as ff
from weightless_core.baselines.deep_compression import deep_compress
from weightless_core.errors import (
    MalformedRecordError,
)
from weightless_core.fileformat.spec import MIN_VERSION_OF_STRUCTURE
from weightless_core.method.layer import EncodedLayer, encode_layer
from weightless_core.retrieval import BY_CODE, STRUCTURES
from weightless_core.retrieval.fuse import SEGMENT_STEPS

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_V3 = ROOT / "tests" / "data" / "golden_v3_fuse.wlss"
DOC = ROOT / "docs" / "format.md"
M64 = (1 << 64) - 1

GOLDEN_V3_SHA256 = "752feeeb2d1878c90fa3c7892a86eace29aff8cca54c393b02958d02dadc6ab4"
GOLDEN_V3_DECODED_SHA256 = {  # sha256 of each decoded tensor's little-endian float32 bytes
    "fc1.weight": "79ee729622548853b683d30ec43d536424c958666a9059a35891cb47a1316a9d",
    "conv.weight": "d41f4bb0afdc8020088a95a7bfcbbab19845a41dc2c261f408c43f38899d3ea0",
    "conv4.weight": "6f8dbc0f9a52fef2ece535c4e7d4bb3c3b49a646111233e31a8f765e7b5155dc",
    "fc2.weight": "284fbebea9b82e3d2d20a738717b6301d9647d9b16ef10140fe34c6fd4c9be7d",
    "fc2b.weight": "284fbebea9b82e3d2d20a738717b6301d9647d9b16ef10140fe34c6fd4c9be7d",
    "fc1.bias": "9261e6ce1ed4b3950d857453066b3f51476974614f525f2d4d333a3fe1b1dbd0",
}
# name -> (structure, nnz, num_cells, t, false_positives): one start segment (fc1), several
# (conv, conv4, fc2), and a Bloomier layer beside them
GOLDEN_V3_LAYERS = {
    "fc1.weight": ("fuse3", 25, 96, 5, 14),
    "conv.weight": ("fuse3", 237, 384, 7, 28),
    "conv4.weight": ("fuse4", 237, 368, 9, 9),
    "fc2.weight": ("fuse4", 9, 24, 8, 0),
    "fc2b.weight": ("bloomier", 9, 45, 8, 0),
}

# ----------------------------------------------------------------------------- the reference


def _doc_steps() -> dict[int, list[int]]:
    """STEPS_3 and STEPS_4 as docs/format.md writes them."""
    text = DOC.read_text()
    out = {}
    for a in (3, 4):
        found = re.search(rf"STEPS_{a} = ([\d,\s]+)\(", text)
        assert found, f"STEPS_{a} not in the doc"
        out[a] = [int(x) for x in found.group(1).replace("\n", " ").split(",")]
    return out


STEPS = _doc_steps()


def _ref_mix64(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _ref_hash64(seed: int, key: int) -> int:
    return _ref_mix64(key + _ref_mix64(seed + 0x9E3779B97F4A7C15))


def _ref_fuse_layout(a: int, num_cells: int) -> tuple[int, int]:
    """(L, S) of a table of ``num_cells`` cells."""
    k = 2 + sum(1 for step in STEPS[a] if step <= num_cells)
    seg = 1 << k
    assert num_cells % seg == 0 and num_cells // seg - (a - 1) >= 1
    return seg, num_cells // seg - (a - 1)


def _ref_cells_and_mask(code: int, seed: int, key: int, num_cells: int, t: int):
    h = _ref_hash64(seed, key)
    if code == 1:
        b = num_cells // 3
        cells = []
        for j in range(3):
            rot = 21 * j
            rj = (((h << rot) | (h >> (64 - rot))) & M64 if rot else h) & 0xFFFFFFFF
            cells.append(j * b + ((rj * b) >> 32))
        return cells, (h ^ (h >> 32)) & ((1 << t) - 1)
    a = {2: 3, 3: 4}[code]
    seg, segs = _ref_fuse_layout(a, num_cells)
    g = _ref_mix64(h)
    s = ((h >> 32) * segs) >> 32
    w = 64 // a
    cells = [(s + j) * seg + ((g >> (w * j)) & (seg - 1)) for j in range(a)]
    return cells, h & ((1 << t) - 1)


def _ref_cell(table: bytes, c: int, t: int) -> int:
    return sum(((table[(c * t + b) // 8] >> ((c * t + b) % 8)) & 1) << b for b in range(t))


def _ref_decode_layer(body: bytes) -> tuple[tuple[int, ...], list[float]]:
    ndim = body[0]
    shape = struct.unpack_from(f"<{ndim}Q", body, 1)
    pos = 1 + 8 * ndim
    code, r, t, hsh, seed, num_cells, _, _ = struct.unpack_from("<BBBBQQQQ", body, pos)
    assert code in (1, 2, 3) and hsh == 1
    pos += 36
    codebook = struct.unpack_from(f"<{1 << r}f", body, pos)
    table = body[pos + 4 * (1 << r) :]
    values = []
    for i in range(math.prod(shape)):
        cells, q = _ref_cells_and_mask(code, seed, i, num_cells, t)
        for c in cells:
            q ^= _ref_cell(table, c, t)
        values.append(codebook[q] if q < 1 << r else 0.0)
    return shape, values


def _ref_decode_file(data: bytes) -> dict[str, np.ndarray]:
    assert data[:8] == b"\x89WLS\r\n\x1a\n" and data[-4:] == b"WLS\x00"
    (count,) = struct.unpack_from("<I", data, 12)
    pos, out = 16, {}
    for _ in range(count):
        kind, name_len = struct.unpack_from("<BH", data, pos)
        name = data[pos + 3 : pos + 3 + name_len].decode()
        (body_len,) = struct.unpack_from("<Q", data, pos + 3 + name_len)
        pos += 11 + name_len
        body = data[pos : pos + body_len]
        pos += body_len
        if kind == 1:
            shape, values = _ref_decode_layer(body)
            out[name] = np.array(values, dtype="<f4").reshape(shape)
        elif kind == 2:
            ndim = body[1]
            assert body[0] == 1  # float32: the only plain dtype of the v3 golden file
            shape = struct.unpack_from(f"<{ndim}Q", body, 2)
            out[name] = np.frombuffer(body[2 + 8 * ndim :], dtype="<f4").reshape(shape)
    assert pos == len(data) - 8
    assert struct.unpack_from("<I", data, pos)[0] == zlib.crc32(data[:pos])
    return out


def _with_version(data: bytes, version: int) -> bytes:
    head = data[:8] + struct.pack("<H", version) + data[10:-8]
    return head + struct.pack("<I", zlib.crc32(head)) + b"WLS\x00"


def _sparse(shape: tuple[int, ...], keep: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= keep] = 0.0
    return w


# ----------------------------------------------------------------------------- the document


def test_doc_steps_and_examples_match_the_library():
    assert {a: tuple(v) for a, v in STEPS.items()} == SEGMENT_STEPS
    doc = DOC.read_text()
    h = _ref_hash64(1, 7)
    assert f"`h = {h:#018x}`" in doc and f"`g = {_ref_mix64(h):#018x}`" in doc
    assert _ref_cells_and_mask(2, 1, 7, 384, 6) == ([49, 100, 188], 44)
    assert _ref_cells_and_mask(3, 1, 7, 368, 6) == ([33, 53, 73, 92], 44)
    assert "`(49, 100, 188)`" in doc and "`(33, 53, 73, 92)`" in doc
    assert _ref_fuse_layout(3, 384) == (64, 4) and _ref_fuse_layout(4, 368) == (16, 20)


def test_every_structure_has_a_version():
    assert set(MIN_VERSION_OF_STRUCTURE) == set(BY_CODE)
    assert MIN_VERSION_OF_STRUCTURE == {1: 1, 2: 3, 3: 3, 4: 4}
    assert ff.FORMAT_VERSION == 6 and ff.SUPPORTED_VERSIONS == (1, 2, 3, 4, 5, 6)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("structure", ["bloomier", "fuse3", "fuse4"])  # ribbon: v4's tests
def test_save_load_round_trip_with_each_structure(tmp_path, structure):
    w = _sparse((24, 25), keep=0.3, seed=1)
    layer = encode_layer(w, r=3, t=7, seed=3, structure=structure)
    entries = {"w": layer, "b": torch.linspace(-1, 1, 24)}
    data = ff.to_bytes(entries, metadata={"structure": structure})
    assert header_version(data) == MIN_VERSION_OF_STRUCTURE[layer.structure.code]
    expected = {"bloomier": 1, "fuse3": 3, "fuse4": 3}[structure]
    assert header_version(data) == expected == ff.file_version(entries)
    model = ff.from_bytes(data)
    got = model.entries["w"]
    assert isinstance(got, EncodedLayer) and got == layer
    assert type(got.structure) is STRUCTURES[structure]
    decoded = layer.decode()
    np.testing.assert_array_equal(got.decode(), decoded)
    np.testing.assert_array_equal(_ref_decode_file(data)["w"], decoded)
    assert model.file_nbytes() == len(data)
    assert ff.to_bytes(model.entries, metadata=model.metadata) == data

    path = tmp_path / f"{structure}.wlss"
    assert ff.save(path, entries) == path.stat().st_size
    state = ff.load(path)
    np.testing.assert_array_equal(state["w"].numpy(), decoded)
    nz = w != 0
    assert np.isin(decoded[nz], layer.codebook).all() and (decoded[nz] != 0).all()
    assert layer.false_positives == int((decoded[~nz] != 0).sum())


def test_version_is_the_lowest_that_holds_the_file():
    w = _sparse((20, 20), keep=0.3, seed=2)
    layers = {s: encode_layer(w, r=2, t=6, seed=3, structure=s) for s in STRUCTURES}
    dc = deep_compress(w, r=2)
    cases = [
        ({}, 1),
        ({"a": layers["bloomier"]}, 1),
        ({"a": layers["bloomier"], "d": dc}, 2),
        ({"a": layers["fuse3"]}, 3),
        ({"a": layers["bloomier"], "b": layers["fuse4"]}, 3),
        ({"d": dc, "b": layers["fuse4"], "c": layers["fuse3"]}, 3),
    ]
    for entries, version in cases:
        assert ff.file_version(entries) == version
        data = ff.to_bytes(entries)
        assert header_version(data) == version
        assert ff.from_bytes(data).entries.keys() == entries.keys()


def test_fuse_in_an_older_version_is_malformed():
    w = _sparse((20, 20), keep=0.3, seed=4)
    for structure in ("fuse3", "fuse4"):
        data = ff.to_bytes({"w": encode_layer(w, r=2, t=6, seed=3, structure=structure)})
        for old in (1, 2):
            with pytest.raises(
                MalformedRecordError,
                match=rf"structure {STRUCTURES[structure].code} \({structure}\) needs format "
                rf"version 3, but the file says version {old}",
            ):
                ff.from_bytes(_with_version(data, old))


def test_fuse_table_sizes_are_checked():
    """A num_cells that no fuse layout has is malformed, even with a table of matching length."""

    def body(code: int, num_cells: int) -> bytes:
        return (
            struct.pack("<BQ", 1, 40)
            + struct.pack("<BBBBQQQQ", code, 2, 5, 1, 0, num_cells, 1, 0)
            + np.zeros(4, dtype="<f4").tobytes()
            + bytes((num_cells * 5 + 7) // 8)
        )

    def file(code: int, num_cells: int) -> bytes:
        b = body(code, num_cells)
        out = b"\x89WLS\r\n\x1a\n" + struct.pack("<HHI", 3, 0, 1)
        out += struct.pack("<BH", 1, 1) + b"w" + struct.pack("<Q", len(b)) + b
        return out + struct.pack("<I", zlib.crc32(out)) + b"WLS\x00"

    assert ff.from_bytes(file(2, 12)).entries["w"].structure.num_cells == 12
    assert ff.from_bytes(file(3, 16)).entries["w"].structure.num_cells == 16
    for code, bad in ((2, 0), (2, 11), (2, 16), (2, 14), (3, 12), (3, 18), (3, 84)):
        with pytest.raises(MalformedRecordError, match="cells"):
            ff.from_bytes(file(code, bad))


# ----------------------------------------------------------------------------- golden v3


def test_golden_v3_decodes_to_pinned_values():
    data = GOLDEN_V3.read_bytes()
    assert len(data) < 4096 and header_version(data) == 3
    assert hashlib.sha256(data).hexdigest() == GOLDEN_V3_SHA256
    model = ff.read_model(GOLDEN_V3)
    assert model.metadata == {
        "arch": "golden-fuse",
        "note": "format v3 golden file: binary fuse layers",
    }
    state = ff.load(GOLDEN_V3)
    assert list(state) == list(GOLDEN_V3_DECODED_SHA256)
    ref = _ref_decode_file(data)
    assert set(ref) == set(state)
    for name, tensor in state.items():
        as_f32 = tensor.numpy().astype("<f4")
        np.testing.assert_array_equal(as_f32, ref[name])
        assert hashlib.sha256(as_f32.tobytes()).hexdigest() == GOLDEN_V3_DECODED_SHA256[name]
    for name, (kind, nnz, num_cells, t, fp) in GOLDEN_V3_LAYERS.items():
        layer = model.entries[name]
        assert isinstance(layer, EncodedLayer)
        s = layer.structure
        assert (s.kind, layer.nnz, s.num_cells, s.t, layer.false_positives) == (
            kind,
            nnz,
            num_cells,
            t,
            fp,
        )
    # Every stored weight reads back exactly; pruned positions are 0 or a false positive.
    for name, (w, cb, codes, *_rest) in make_golden().fuse_weights().items():
        decoded = state[name].numpy()
        kept = w != 0
        np.testing.assert_array_equal(decoded[kept], cb[codes][kept])
        assert model.entries[name].false_positives == int((decoded[~kept] != 0).sum())


def test_make_golden_reproduces_the_v3_file():
    assert make_golden().golden_v3_bytes() == GOLDEN_V3.read_bytes()


def test_every_truncation_and_flip_of_golden_v3_is_detected():
    assert_cuts_and_flips_detected(GOLDEN_V3.read_bytes())
