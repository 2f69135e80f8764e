"""Context-coded layers (format version 6, kind 7): an adaptive range coder for positions and codes.

A pure-Python decoder written from docs/format.md alone (``_ref_*``) reads the golden v6 file,
so the document, the golden bytes and the library are checked against each other; the
compiled kernels are checked against their own plain-Python run, byte for byte.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib

import numpy as np
import pytest
from goldenkit import DATA, assert_cuts_and_flips_detected, make_golden, read_golden
from test_fileformat_dc import _ref_records
from test_fileformat_ribbon import _sparse

from weightless_core import fileformat as ff
from weightless_core.baselines import range_coder
from weightless_core.baselines.context_coded import ContextCodedLayer, context_code
from weightless_core.baselines.strongest import deep_compress_best, sparse_index_bound_bits
from weightless_core.errors import FormatError, InvalidInputError, MalformedRecordError

GOLDEN_V6 = DATA / "golden_v6_context.wlss"
GOLDEN_V6_SHA256 = "1b8f58dcff60a7042e32451ee09dd2a2c4dd3b088a2b137c43740a8eb377a12b"
# name -> (r, nnz, grid shape, live)
GOLDEN_V6_LAYERS = {
    "conv.weight": (3, 19, (6, 64), False),
    "runs.weight": (1, 121, (16, 48), False),
    "live.weight": (2, 26, (6, 10), True),
    "empty.weight": (1, 0, (2, 3), False),
}

# ----------------------------------------------------------------------------- the reference


class _RefDecoder:
    """The range decoder of docs/format.md, kind 7, in plain integers."""

    def __init__(self, stream: bytes) -> None:
        assert stream[0] == 0
        self.stream, self.next = stream, 5
        self.code = int.from_bytes(stream[1:5], "big")
        self.range = 2**32 - 1

    def bit(self, model: list[int]) -> int:
        n0, n1 = model
        p0 = min(max(65536 * (2 * n0 + 1) // (2 * (n0 + n1) + 2), 1), 65535)
        bound = (self.range >> 16) * p0
        if self.code < bound:
            b, self.range = 0, bound
        else:
            b, self.code, self.range = 1, self.code - bound, self.range - bound
        model[b] += 1
        if model[0] + model[1] >= 8192:
            model[0] >>= 1
            model[1] >>= 1
        while self.range < 2**24:
            self.range = (self.range << 8) % 2**32
            self.code = ((self.code << 8) | self.stream[self.next]) % 2**32
            self.next += 1
        return b


def _ref_decode(body: bytes) -> np.ndarray:
    ndim = body[0]
    dims = struct.unpack_from(f"<{ndim}Q", body, 1)
    pos = 1 + 8 * ndim
    r, flags, width, nnz, stream_len = struct.unpack_from("<BBQQQ", body, pos)
    pos += 26
    k = 1 << r
    codebook = np.frombuffer(body, dtype="<f4", count=k, offset=pos)
    pos += 4 * k
    rows, cols = dims[0], math.prod(dims) // dims[0]
    live_rows, live_cols = np.ones(rows, bool), np.ones(cols, bool)
    if flags & 1:
        nr, nc = (rows + 7) // 8, (cols + 7) // 8
        bits = np.unpackbits(np.frombuffer(body[pos : pos + nr + nc], np.uint8), bitorder="little")
        live_rows, live_cols = bits[:rows].astype(bool), bits[8 * nr : 8 * nr + cols].astype(bool)
        pos += nr + nc
    stream = body[pos:]
    assert len(stream) == stream_len
    dec = _RefDecoder(stream)
    position_models = [[0, 0] for _ in range(16)]
    code_models = [[0, 0] for _ in range(k)]
    kept = np.zeros((rows, cols), dtype=bool)
    out = np.zeros((rows, cols), dtype=np.float32)
    for a in range(rows):
        for b in range(cols):
            if not (live_rows[a] and live_cols[b]):
                continue
            left = b % width != 0 and kept[a, b - 1]
            up = b >= width and kept[a, b - width]
            upleft = b >= width and b % width != 0 and kept[a, b - width - 1]
            upright = b >= width and (b + 1) % width != 0 and kept[a, b - width + 1]
            ctx = int(left) + 2 * int(up) + 4 * int(upleft) + 8 * int(upright)
            if dec.bit(position_models[ctx]):
                kept[a, b] = True
                m = 1
                for _ in range(r):
                    m = 2 * m + dec.bit(code_models[m])
                out[a, b] = codebook[m - k]
    assert dec.next == stream_len and int(kept.sum()) == nnz
    return out.reshape(dims)


def _ref_context_records(data: bytes) -> dict[str, np.ndarray]:
    return {name: _ref_decode(body) for kind, name, body in _ref_records(data) if kind == 7}


# ----------------------------------------------------------------------------- golden v6


def test_golden_v6_decodes_to_what_the_document_says():
    model, state = read_golden(
        GOLDEN_V6, version=6, sha256=GOLDEN_V6_SHA256, arch="golden-context",
        reference=_ref_context_records, names=GOLDEN_V6_LAYERS,
    )  # fmt: skip
    for name, (r, nnz, grid, live) in GOLDEN_V6_LAYERS.items():
        layer = model.entries[name]
        assert isinstance(layer, ContextCodedLayer)
        assert (layer.r, layer.grid_shape, layer.live is not None) == (r, grid, live)
        assert layer.nnz == int((state[name].numpy() != 0).sum()) == nnz
    assert model.entries["empty.weight"].nnz == 0 and len(model.entries["empty.weight"].stream) == 5


def test_make_golden_reproduces_the_v6_file():
    assert make_golden().golden_v6_bytes() == GOLDEN_V6.read_bytes()


def test_every_truncation_and_flip_of_golden_v6_is_detected():
    assert_cuts_and_flips_detected(GOLDEN_V6.read_bytes(), step=3)


# ----------------------------------------------------------------------------- the coder


def _clustered(w: np.ndarray, r: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight with its non-zeros replaced by centroids, codebook, codes)."""
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-1, 1, 1 << r, dtype=np.float32) + np.float32(0.01)
    codes = rng.integers(0, 1 << r, size=w.shape)
    return np.where(w != 0, codebook[codes], 0).astype(np.float32), codebook, codes


@pytest.mark.parametrize("r", [1, 2, 5, 8])
@pytest.mark.parametrize("live", [False, True])
def test_round_trip_is_exact_and_the_compiled_kernels_match_plain_python(r, live):
    w = _sparse((37, 5, 3), keep=0.2, dead_rows=range(0, 37, 5), dead_cols=(1, 9), seed=r)
    w, cb, codes = _clustered(w, r, seed=r)
    layer = context_code(w, r=r, codebook=cb, codes=codes, live=live)
    assert layer is not None and (layer.live is not None) == live
    np.testing.assert_array_equal(layer.decode(), w)
    lines = layer.coded_lines()
    plain = range_coder.encode_grid.py_func(
        (w.ravel() != 0).astype(np.uint8), codes.ravel()[w.ravel() != 0].astype(np.uint8),
        *lines, np.int64(layer.width), np.int64(r),
    )  # fmt: skip
    assert plain.tobytes() == layer.stream
    status, positions, got = range_coder.decode_grid.py_func(
        np.frombuffer(layer.stream, np.uint8), *lines, np.int64(layer.width), np.int64(r),
        np.int64(layer.nnz),
    )  # fmt: skip
    assert status == range_coder.OK
    np.testing.assert_array_equal((positions, got), layer.read())
    back = ff.from_bytes(ff.to_bytes({"w": layer})).entries["w"]
    assert back == layer and ff.file_version({"w": layer}) == 6


def test_the_smaller_grid_is_chosen_and_sizes_add_up():
    w = _sparse((60, 80), keep=0.1, dead_rows=range(0, 60, 2), dead_cols=range(40), seed=3)
    w, cb, codes = _clustered(w, 2)
    full = context_code(w, r=2, codebook=cb, codes=codes, live=False)
    grid = context_code(w, r=2, codebook=cb, codes=codes, live=True)
    best = context_code(w, r=2, codebook=cb, codes=codes)
    assert best == min(full, grid, key=lambda layer: layer.nbytes)
    for layer in (full, grid):
        assert sum(layer.sizes().values()) == 8 * layer.nbytes
        assert ff.record_nbytes("w", layer) == len(ff.to_bytes({"w": layer})) - 24 - 0
        assert layer.paper_nbytes < layer.nbytes


def test_runs_cost_less_than_deep_compression_and_the_entropy_bound():
    # kept weights in horizontal runs of 4 to 8: what a kernel's neighbouring taps look like
    rng = np.random.default_rng(7)
    w = np.zeros((200, 400), dtype=np.float32)
    for row in range(200):
        for start in rng.integers(0, 392, size=2):
            w[row, start : start + rng.integers(4, 9)] = 1.0
    w, cb, codes = _clustered(w, 2, seed=1)
    layer = context_code(w, r=2, codebook=cb, codes=codes)
    dc = deep_compress_best(w, r=2, codebook=cb, codes=codes)
    mask = w != 0
    bound = sparse_index_bound_bits(mask, np.bincount(codes[mask], minlength=4)) + 32 * 4
    assert layer.paper_bits < 0.8 * bound and layer.paper_bits < 0.9 * dc.paper_bits
    # and on positions with no structure at all, it costs about the bound: i.i.d. kept bits
    flat = _clustered(np.where(rng.random((200, 400)) < 0.02, 1, 0).astype(np.float32), 2)
    iid = context_code(flat[0], r=2, codebook=flat[1], codes=flat[2])
    m = flat[0] != 0
    iid_bound = sparse_index_bound_bits(m, np.bincount(flat[2][m], minlength=4)) + 32 * 4
    assert iid_bound <= iid.paper_bits <= 1.02 * iid_bound + 64


def test_a_layer_past_the_caps_is_not_context_coded():
    w = np.zeros((1, 200_000), dtype=np.float32)  # 5 stream bytes cannot code 200,000 positions
    cb = np.array([-1, 1], dtype=np.float32)
    assert context_code(w, r=1, codebook=cb, codes=np.zeros(w.shape, np.int64)) is None
    w[0, 7] = 1.0
    assert context_code(w, r=1, codebook=cb, codes=np.ones(w.shape, np.int64)) is not None


def test_bad_arguments_are_refused():
    w = np.eye(4, dtype=np.float32)
    with pytest.raises(InvalidInputError, match="r"):
        context_code(w, r=9, codebook=np.zeros(512, np.float32), codes=np.zeros((4, 4), int))
    with pytest.raises(InvalidInputError, match="codebook"):
        context_code(w, r=2, codebook=np.zeros(3, np.float32), codes=np.zeros((4, 4), int))


# ----------------------------------------------------------------------------- hostile records


def _layer() -> ContextCodedLayer:
    w, cb, codes = _clustered(_sparse((20, 30), keep=0.15, dead_rows=(0, 5), seed=4), 2)
    layer = context_code(w, r=2, codebook=cb, codes=codes, live=True)
    assert layer is not None
    return layer


def _file_of(body: bytes, *, version: int = 6) -> bytes:
    head = struct.pack("<8sHHI", ff.MAGIC, version, 0, 1)
    record = struct.pack("<BH", 7, 1) + b"w" + struct.pack("<Q", len(body)) + body
    data = head + record
    return data + struct.pack("<I4s", zlib.crc32(data), ff.END_MAGIC)


def _body(layer: ContextCodedLayer) -> bytes:
    data = ff.to_bytes({"w": layer})
    return data[16 + 12 : -8]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, s: b[:s] + bytes([1]) + b[s + 1 :], "first byte is not 0"),
        (lambda b, s: b[: s + 9] + bytes([b[s + 9] ^ 0x80]) + b[s + 10 :], "malformed"),
    ],
)
def test_a_damaged_stream_is_malformed(change, message):
    # (a flip in the last bytes may decode the same: the flush's slack; the CRC catches it)
    layer = _layer()
    body = _body(layer)
    start = len(body) - len(layer.stream)
    with pytest.raises(MalformedRecordError, match=message):
        ff.from_bytes(_file_of(change(body, start)))


def test_stream_length_nnz_flags_and_version_are_checked():
    layer = _layer()
    body = _body(layer)
    assert isinstance(ff.from_bytes(_file_of(body)).entries["w"], ContextCodedLayer)
    at = 1 + 8 * 2  # after ndim and two dims: r, flags, width, nnz, stream_len
    r, flags, width, nnz, n = struct.unpack_from("<BBQQQ", body, at)

    def params(**kw: int) -> bytes:
        f = {"r": r, "flags": flags, "width": width, "nnz": nnz, "n": n} | kw
        packed = struct.pack("<BBQQQ", f["r"], f["flags"], f["width"], f["nnz"], f["n"])
        return body[:at] + packed + body[at + 26 :]

    cases = {
        "more kept weights than nnz": params(nnz=nnz - 1),
        "fewer kept weights than nnz": params(nnz=nnz + 1),
        "unknown flags": params(flags=flags | 2),
        "stream is": params(n=n + 1),
        "r must be": params(r=0),
        "width must divide": params(width=7),
    }
    for message, bad in cases.items():
        with pytest.raises(MalformedRecordError, match=message):
            ff.from_bytes(_file_of(bad))
    extra = params(n=n + 1) + b"\x00"  # one byte past what the decoder reads
    with pytest.raises(MalformedRecordError, match="left over"):
        ff.from_bytes(_file_of(extra))
    cut = params(n=n - 1)[:-1]
    with pytest.raises(MalformedRecordError, match="ends before"):
        ff.from_bytes(_file_of(cut))
    with pytest.raises(MalformedRecordError, match=r"kind 7 .*needs format version 6.*version 5"):
        ff.from_bytes(_file_of(body, version=5))


def test_a_huge_grid_behind_a_tiny_stream_is_refused_before_decoding():
    body = struct.pack("<BQQ", 2, 1 << 20, 1 << 20) + struct.pack("<BBQQQ", 1, 0, 1, 0, 5)
    body += np.array([-1, 1], "<f4").tobytes() + bytes(5)
    with pytest.raises(MalformedRecordError, match="1024 positions a byte"):
        ff.from_bytes(_file_of(body))


def test_writer_refuses_what_the_reader_would():
    layer = _layer()
    bad = dataclasses.replace(layer, nnz=layer.nnz + 1)
    with pytest.raises(InvalidInputError, match="context-coded layer 'w'"):
        ff.to_bytes({"w": bad})
    with pytest.raises(FormatError, match="fewer kept weights"):
        bad.decode()


def test_a_reader_walks_only_the_live_grid_and_allocates_nothing_per_dead_row():
    # many live rows, one live column at the far end of 2**20: the decoder's work is the live
    # grid (the caps' measure), not live rows x every column
    cols = 1 << 20
    w = np.zeros((64, cols), dtype=np.float32)
    w[::2, cols - 1] = 1.0
    w, cb, codes = _clustered(w, 1)
    layer = context_code(w, r=1, codebook=cb, codes=codes, live=True)
    assert layer is not None and layer.grid_shape == (32, 1)
    rows, n, row_index, col_index = layer.coded_lines()
    assert (rows, n, col_index.tolist()) == (64, cols, [cols - 1])
    assert row_index.tolist() == list(range(0, 64, 2))
    np.testing.assert_array_equal(layer.decode(), w)
    # without bitmaps nothing is allocated per row or column: the kernels get empty indices
    full = context_code(np.eye(3, dtype=np.float32), r=1, codebook=cb, codes=np.zeros((3, 3), int))
    assert full is not None and [a.size for a in full.coded_lines()[2:]] == [0, 0]


def test_a_codebook_that_is_not_float32_is_refused_before_writing():
    layer = _layer()
    wide = dataclasses.replace(layer, codebook=np.array([1e300, 0, 1, 2], dtype=np.float64))
    with pytest.raises(InvalidInputError, match="float32"):
        ff.to_bytes({"w": wide})
