"""Format version 4: ribbon retrieval (structure 4) and tables of the live grid (kind 5).

A pure-Python reader written from docs/format.md alone (``_ref_*``) decodes the golden v4 file,
which holds ribbon layers with and without liveness bitmaps and a binary fuse layer with them,
so the document, the golden bytes and the library are checked against each other.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from goldenkit import DATA, assert_cuts_and_flips_detected, header_version, make_golden, read_golden
from test_fileformat_dc import _ref_records
from test_fileformat_fuse import _ref_cell, _ref_cells_and_mask, _ref_hash64, _ref_mix64

from weightless_core import fileformat as ff
from weightless_core.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    MalformedRecordError,
)
from weightless_core.method.layer import EncodedLayer, encode_layer
from weightless_core.method.liveness import Liveness

GOLDEN_V4 = DATA / "golden_v4_ribbon.wlss"
GOLDEN_V4_SHA256 = "769b0e3100859f531159d58a62d7699a2ed34a3d42be3c11b38f6823b454e106"
# name -> (structure, nnz, num_cells, t, false_positives, live grid shape or None)
GOLDEN_V4_LAYERS = {
    "small.weight": ("ribbon", 25, 128, 5, 9, None),
    "conv.weight": ("ribbon", 237, 242, 7, 22, None),
    "live.weight": ("ribbon", 26, 128, 6, 3, (6, 10)),
    "live3.weight": ("fuse3", 26, 96, 5, 0, (6, 10)),
}

# ----------------------------------------------------------------------------- the reference


def _ref_ribbon_query(seed: int, key: int, num_cells: int, t: int, table: bytes) -> int:
    h = _ref_hash64(seed, key)
    s = ((h >> 32) * (num_cells - 127)) >> 32
    row = (_ref_mix64(h) | 1) + (_ref_mix64(_ref_mix64(h)) << 64)
    q = h & ((1 << t) - 1)
    for j in range(128):
        if row >> j & 1:
            q ^= _ref_cell(table, s + j, t)
    return q


def _ref_query(code: int, seed: int, key: int, num_cells: int, t: int, table: bytes) -> int:
    if code == 4:
        return _ref_ribbon_query(seed, key, num_cells, t, table)
    cells, q = _ref_cells_and_mask(code, seed, key, num_cells, t)
    for c in cells:
        q ^= _ref_cell(table, c, t)
    return q


def _ref_bits(raw: bytes, count: int) -> list[bool]:
    return [bool(raw[i // 8] >> (i % 8) & 1) for i in range(count)]


def _ref_decode_layer(body: bytes, kind: int) -> np.ndarray:
    """A kind-1, -5 or -6 body decoded as docs/format.md says, from the bytes alone."""
    ndim = body[0]
    shape = struct.unpack_from(f"<{ndim}Q", body, 1)
    pos = 1 + 8 * ndim
    code, r, t, hsh, seed, num_cells, _, _ = struct.unpack_from("<BBBBQQQQ", body, pos)
    assert code in (1, 2, 3, 4) and hsh == 1
    pos += 36
    codebook = struct.unpack_from(f"<{1 << r}f", body, pos)
    pos += 4 * (1 << r)
    live, veto = kind == 5, None
    if kind == 6:
        live, *veto = struct.unpack_from("<BBQQ", body, pos)
        pos += 18
    rows, cols = shape[0], math.prod(shape) // shape[0]
    live_rows, live_cols = [True] * rows, [True] * cols
    if live:
        live_rows = _ref_bits(body[pos:], rows)
        pos += (rows + 7) // 8
        live_cols = _ref_bits(body[pos:], cols)
        pos += (cols + 7) // 8
    if veto is not None:
        veto.append(body[pos : pos + (veto[2] + 7) // 8])  # code, seed, cells, table
        pos += (veto[2] + 7) // 8
    table = body[pos:]
    assert len(table) == (num_cells * t + 7) // 8
    row_index = {i: a for a, i in enumerate(i for i in range(rows) if live_rows[i])}
    col_index = {j: b for b, j in enumerate(j for j in range(cols) if live_cols[j])}
    out = np.zeros(rows * cols, dtype="<f4")
    for i in range(rows * cols):
        row, col = divmod(i, cols)
        if row not in row_index or col not in col_index:
            continue
        key = row_index[row] * len(col_index) + col_index[col]
        q = _ref_query(code, seed, key, num_cells, t, table)
        if veto is not None and _ref_query(veto[0], veto[1], key, veto[2], 1, veto[3]) == 1:
            q = 1 << r  # vetoed: not a weight
        out[i] = codebook[q] if q < 1 << r else 0.0
    return out.reshape(shape)


def _ref_encoded_records(data: bytes) -> dict[str, np.ndarray]:
    """The decoded kind-1 and kind-5 records of a file, by name."""
    return {
        name: _ref_decode_layer(body, kind)
        for kind, name, body in _ref_records(data)
        if kind in (1, 5)
    }


# ----------------------------------------------------------------------------- golden v4


def test_golden_v4_decodes_to_what_the_document_says():
    model, state = read_golden(
        GOLDEN_V4, version=4, sha256=GOLDEN_V4_SHA256, arch="golden-ribbon",
        reference=_ref_encoded_records, names=GOLDEN_V4_LAYERS,
    )  # fmt: skip
    for name, (kind, nnz, cells, t, fp, grid) in GOLDEN_V4_LAYERS.items():
        layer = model.entries[name]
        assert isinstance(layer, EncodedLayer)
        s = layer.structure
        assert (s.kind, layer.nnz, s.num_cells, s.t, layer.false_positives) == (
            kind,
            nnz,
            cells,
            t,
            fp,
        )
        assert (None if layer.live is None else layer.live.grid_shape) == grid
    golden = make_golden()
    inputs = {
        "small.weight": golden.dense_weights()["fc1.weight"][:3],
        "conv.weight": golden.fuse_weights()["conv.weight"][:3],
        "live.weight": golden.live_weight()[:3],
        "live3.weight": golden.live_weight()[:3],
    }
    for name, (w, cb, codes) in inputs.items():  # every kept weight exact, fps counted right
        decoded = state[name].numpy()
        kept = w != 0
        np.testing.assert_array_equal(decoded[kept], cb[codes][kept])
        assert model.entries[name].false_positives == int((decoded[~kept] != 0).sum())


def test_make_golden_reproduces_the_v4_file():
    assert make_golden().golden_v4_bytes() == GOLDEN_V4.read_bytes()


def test_every_truncation_and_flip_of_golden_v4_is_detected():
    assert_cuts_and_flips_detected(GOLDEN_V4.read_bytes(), step=5, bit=0x04)


@pytest.mark.parametrize("live", [False, True])
def test_a_ribbon_layer_round_trips_through_a_file(tmp_path, live):
    w = _sparse((24, 25), dead_rows=(3, 9), keep=0.3, seed=1)
    layer = encode_layer(w, r=3, t=7, seed=3, structure="ribbon", liveness=live)
    entries = {"w": layer, "b": torch.linspace(-1, 1, 24)}
    data = ff.to_bytes(entries)
    assert header_version(data) == 4 == ff.file_version(entries)
    model = ff.from_bytes(data)
    assert model.entries["w"] == layer
    decoded = layer.decode()
    np.testing.assert_array_equal(_ref_encoded_records(data)["w"], decoded)
    assert model.file_nbytes() == len(data) and ff.to_bytes(model.entries) == data
    path = tmp_path / "r.wlss"
    assert ff.save(path, entries) == path.stat().st_size
    np.testing.assert_array_equal(ff.load(path)["w"].numpy(), decoded)
    assert np.all(decoded[w != 0] != 0)  # no stored weight reads back as pruned


# ----------------------------------------------------------------------------- liveness


def _sparse(shape, *, dead_rows=(), dead_cols=(), keep=0.1, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) > keep] = 0
    m = w.reshape(shape[0], -1)
    m[list(dead_rows), :] = 0
    m[:, list(dead_cols)] = 0
    return w


@pytest.mark.parametrize("structure", ["bloomier", "fuse3", "fuse4", "ribbon"])
def test_liveness_round_trip_puts_false_positives_only_in_live_rows_and_columns(structure):
    w = _sparse((40, 3, 5), dead_rows=range(0, 40, 3), dead_cols=(0, 4, 7, 14), keep=0.3)
    layer = encode_layer(w, r=2, t=4, seed=5, structure=structure, liveness=True)
    assert layer.live is not None
    live = Liveness.of(w.ravel() != 0, w.shape)
    assert layer.live == live
    assert not live.rows[::3].any() and not live.cols[[0, 4, 7, 14]].any()
    assert live.grid_shape == (int(live.rows.sum()), int(live.cols.sum()))
    decoded = layer.decode()
    kept = w != 0
    assert np.all(decoded[kept] != 0)  # no stored weight is lost
    matrix = decoded.reshape(40, 15)
    assert not matrix[~live.rows].any() and not matrix[:, ~live.cols].any()
    fps = (decoded != 0) & ~kept
    assert fps.sum() == layer.false_positives > 0
    assert layer.queried == live.grid_size < w.size
    again = ff.from_bytes(ff.to_bytes({"w": layer})).entries["w"]
    assert again == layer
    np.testing.assert_array_equal(again.decode(), decoded)
    codes, valid = layer.read_codes()
    np.testing.assert_array_equal(valid, decoded != 0)
    np.testing.assert_array_equal(
        np.where(valid, layer.codebook[codes], 0).astype(np.float32), decoded
    )
    np.testing.assert_array_equal(layer.to_torch(backend="torch").numpy(), decoded)


def test_liveness_is_dropped_when_every_row_and_column_is_live():
    w = _sparse((6, 8), keep=0.5, seed=1)
    w[np.arange(6), np.arange(6)] = 1.0
    w[0, 6] = w[0, 7] = 1.0
    assert encode_layer(w, r=2, t=6, liveness=True).live is None


def test_liveness_false_positives_fall_with_the_dead_share():
    w = _sparse((200, 100), dead_rows=range(100), dead_cols=range(50), keep=0.2, seed=2)
    full = encode_layer(w, r=2, t=6, seed=1, structure="ribbon")
    grid = encode_layer(w, r=2, t=6, seed=1, structure="ribbon", liveness=True)
    assert grid.live is not None and grid.live.grid_size == 100 * 50
    # a quarter of the positions is queried, so about a quarter of the false positives
    assert grid.false_positives < 0.4 * full.false_positives
    assert grid.live.nbytes == 25 + 13  # ceil(200 / 8) + ceil(100 / 8)
    assert grid.nbytes == full.nbytes + grid.live.nbytes - (
        full.structure.table_nbytes - grid.structure.table_nbytes
    )


def test_liveness_bitmaps_with_padding_bits_or_no_live_row_are_refused():
    with pytest.raises(InvalidInputError, match="padding"):
        Liveness.from_bytes(bytes([0xFF, 0x01]), (7, 1))
    w = _sparse((9, 12), dead_rows=(0,), keep=0.3, seed=3)
    layer = encode_layer(w, r=2, t=6, structure="ribbon", liveness=True)
    data = bytearray(ff.to_bytes({"w": layer}))
    # the row bitmap follows the codebook: rows 9 -> 2 bytes; set a padding bit in its last byte
    body = data.index(layer.live.to_bytes())
    data[body + 1] |= 0x80
    with pytest.raises((MalformedRecordError, ChecksumMismatchError)):
        ff.from_bytes(bytes(data))
    dead = Liveness(np.zeros(9, dtype=bool), np.ones(12, dtype=bool))
    import dataclasses

    with pytest.raises(InvalidInputError, match="live row"):
        ff.to_bytes({"w": dataclasses.replace(layer, live=dead)})


def test_a_version_3_file_with_a_kind_5_record_is_refused():
    w = _sparse((9, 12), dead_rows=(0,), keep=0.3, seed=3)
    data = bytearray(ff.to_bytes({"w": encode_layer(w, r=2, t=6, liveness=True)}))
    assert header_version(bytes(data)) == 4
    data[8] = 3
    import zlib

    data[-8:-4] = struct.pack("<I", zlib.crc32(bytes(data[:-8])))
    with pytest.raises(MalformedRecordError, match="version 4"):
        ff.from_bytes(bytes(data))


def test_files_without_ribbon_or_liveness_keep_their_version():
    w = _sparse((9, 12), keep=0.3, seed=4)
    assert header_version(ff.to_bytes({"w": encode_layer(w, r=2, t=6)})) == 1
    assert header_version(ff.to_bytes({"w": encode_layer(w, r=2, t=6, structure="fuse4")})) == 3
    ribbon = encode_layer(w, r=2, t=6, structure="ribbon")
    assert header_version(ff.to_bytes({"w": ribbon})) == 4


def test_decoding_to_a_cuda_or_cpu_tensor_matches_with_liveness():
    w = _sparse((30, 40), dead_rows=range(10), dead_cols=range(5), keep=0.1, seed=6)
    layer = encode_layer(w, r=3, t=7, structure="ribbon", liveness=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        out = layer.to_torch(device, backend="torch")
        np.testing.assert_array_equal(out.cpu().numpy(), layer.decode())
