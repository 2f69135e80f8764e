"""Record kind 4 (Deep Compression) and format version 2.

A pure-Python decoder written from docs/format.md alone (``_ref_*``) reads the golden v2 file,
so the document, the golden bytes and the library are checked against each other.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from goldenkit import assert_cuts_and_flips_detected, header_version, make_golden

from weightless_core import fileformat as ff
from weightless_core.baselines.deep_compression import (
    DeepCompressedLayer,
    decode_entries,
    deep_compress,
)
from weightless_core.errors import (
    FormatError,
    InvalidInputError,
    MalformedRecordError,
    UnsupportedVersionError,
)
from weightless_core.method.layer import EncodedLayer, encode_layer

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_V1 = ROOT / "tests" / "data" / "golden_v1.wlss"
GOLDEN_V2 = ROOT / "tests" / "data" / "golden_v2_dc.wlss"

GOLDEN_V2_SHA256 = "c26fc317aee9129f1552f2fbe69bcc570f2fb8dfde044ab3798c24514d94cc89"
GOLDEN_V2_DECODED_SHA256 = {  # sha256 of the decoded tensor's little-endian float32 bytes
    "conv.weight": "ee32440d0303c84cacc6ca82cee34bbb638532b7aa51af95383387b8bd1c57c7",
    "conv.bias": "b1290cd43eac8e2fa4ad8d45d9f79f8868fc8a6e08c627c33557814743ffdf3e",
    "fc.weight": "28ca74dcbf360296d833867f588e722a268e6abcb3c4800cb1b558838ac6f026",
    "fc2.weight": "284fbebea9b82e3d2d20a738717b6301d9647d9b16ef10140fe34c6fd4c9be7d",
    "empty.weight": "9d908ecfb6b256def8b49a7c504e6c889c4b0e41fe6ce3e01863dd7b61a20aa0",
}
# name -> (nnz, entries, code_bits, gap_bits, nbytes)
GOLDEN_V2_LAYERS = {
    "conv.weight": (19, 20, 62, 65, 381),
    "fc.weight": (39, 42, 94, 180, 139),
    "empty.weight": (0, 0, 0, 0, 94),
}
SEED = 3  # a Bloomier seed that is safe in any test order (see test_fileformat.SEEDS)

# ----------------------------------------------------------------------------- fixtures


def _clustered(shape: tuple[int, ...], zeros: float, r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-1.0, 1.0, 1 << r, dtype=np.float32)
    weight = codebook[rng.integers(0, 1 << r, size=shape)]
    weight[rng.random(shape) < zeros] = 0.0
    return weight


@pytest.fixture(scope="module")
def dc_layers() -> dict[str, DeepCompressedLayer]:
    return {
        "fc.weight": deep_compress(_clustered((30, 40), 0.97, 3, 0), r=3),
        "conv.weight": deep_compress(_clustered((8, 4, 5, 5), 0.99, 2, 1), r=2),
    }


@pytest.fixture(scope="module")
def mixed(dc_layers) -> dict[str, DeepCompressedLayer | EncodedLayer | torch.Tensor]:
    return {
        "conv.weight": dc_layers["conv.weight"],
        "conv.bias": torch.linspace(-1, 1, 8),
        "fc.weight": dc_layers["fc.weight"],
        "fc.bias": torch.zeros(30, dtype=torch.bfloat16),
        "out.weight": encode_layer(_clustered((10, 30), 0.8, 2, 2), r=2, t=7, seed=SEED),
    }


# ----------------------------------------------------------------------------- round trips


def test_round_trip_is_version_2(tmp_path, mixed, dc_layers):
    data = ff.to_bytes(mixed, metadata={"baseline": "deep compression"})
    assert header_version(data) == 2 == ff.file_version(mixed)
    model = ff.from_bytes(data)
    assert list(model.entries) == list(mixed)
    for name, value in mixed.items():
        got = model.entries[name]
        if isinstance(value, torch.Tensor):
            assert got.dtype == value.dtype and torch.equal(got, value)
        else:
            assert type(got) is type(value) and got == value
            np.testing.assert_array_equal(got.decode(), value.decode())
    assert model.deep_compressed_layers() == dc_layers
    assert list(model.encoded_layers()) == ["out.weight"]
    weights = [mixed[n] for n in ("conv.weight", "fc.weight", "out.weight")]
    assert model.original_weight_bytes() == 4 * (8 * 4 * 5 * 5 + 30 * 40 + 10 * 30)
    assert model.encoded_weight_bytes() == sum(layer.nbytes for layer in weights)
    assert model.file_nbytes() == len(data)
    assert ff.to_bytes(model.entries, metadata=model.metadata) == data

    path = tmp_path / "dc.wlss"
    assert ff.save(path, mixed) == path.stat().st_size
    state = ff.load(path)
    for name in dc_layers:
        assert state[name].dtype == torch.float32
        np.testing.assert_array_equal(state[name].numpy(), mixed[name].decode())


def test_record_body_is_nbytes(mixed):
    for kind, name, body in _ref_records(ff.to_bytes(mixed)):
        if kind == 4:
            assert len(body) == mixed[name].nbytes
            assert ff.record_nbytes(name, mixed[name]) == 11 + len(name) + len(body)


def test_load_into_a_module(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    w = conv.weight.detach().numpy().copy()
    w[np.abs(w) < 0.12] = 0.0
    layer = deep_compress(w, r=3)
    path = tmp_path / "conv.wlss"
    ff.save(path, {"weight": layer, "bias": conv.bias.detach()})
    target = torch.nn.Conv2d(3, 4, 3)
    ff.load_into(target, path)
    np.testing.assert_array_equal(target.weight.detach().numpy(), layer.decode())


def test_files_without_kind_4_stay_version_1(mixed):
    plain = {k: v for k, v in mixed.items() if not isinstance(v, DeepCompressedLayer)}
    assert header_version(ff.to_bytes(plain)) == 1 == ff.file_version(plain)
    assert header_version(ff.to_bytes({})) == 1
    golden = GOLDEN_V1.read_bytes()
    model = ff.from_bytes(golden)
    assert header_version(golden) == 1
    assert ff.to_bytes(model.entries, metadata=model.metadata) == golden


def test_kind_4_in_a_version_1_file_is_refused(dc_layers):
    body = _deep(dc_layers["fc.weight"])
    assert isinstance(ff.from_bytes(_file([(4, b"w", body)])).entries["w"], DeepCompressedLayer)
    with pytest.raises(MalformedRecordError, match=r"kind 4 .*needs format version 2.*version 1"):
        ff.from_bytes(_file([(4, b"w", body)], version=1))


def test_unknown_versions_are_refused():
    with pytest.raises(UnsupportedVersionError, match="reads versions 1, 2, 3, 4, 5, 6"):
        ff.from_bytes(_file([], version=7))


def test_writer_refuses_bad_layers(tmp_path, dc_layers):
    layer = dc_layers["fc.weight"]
    bad = {
        "nnz": DeepCompressedLayer(**{**_fields(layer), "nnz": layer.nnz + 1}),
        "shape": DeepCompressedLayer(**{**_fields(layer), "shape": (0, 4)}),
        "stream": DeepCompressedLayer(**{**_fields(layer), "payload": layer.payload[:-1]}),
    }
    for case, value in bad.items():
        with pytest.raises(InvalidInputError, match="Deep Compression layer 'w'"):
            ff.save(tmp_path / "m.wlss", {"big": torch.zeros(1000), "w": value})
            pytest.fail(case)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- golden v2


def test_golden_v2_decodes_to_pinned_values():
    data = GOLDEN_V2.read_bytes()
    assert len(data) < 4096 and header_version(data) == 2
    assert hashlib.sha256(data).hexdigest() == GOLDEN_V2_SHA256
    model = ff.read_model(GOLDEN_V2)
    assert model.metadata == {
        "arch": "golden-dc",
        "note": "format v2 golden file: Deep Compression records",
    }
    state = ff.load(GOLDEN_V2)
    assert list(state) == list(GOLDEN_V2_DECODED_SHA256)
    ref = _ref_decode_file(data)
    for name, tensor in state.items():
        as_f32 = tensor.numpy().astype("<f4")
        assert hashlib.sha256(as_f32.tobytes()).hexdigest() == GOLDEN_V2_DECODED_SHA256[name]
        if name in ref:
            np.testing.assert_array_equal(as_f32, ref[name])
    for name, (nnz, entries, code_bits, gap_bits, nbytes) in GOLDEN_V2_LAYERS.items():
        layer = model.entries[name]
        assert isinstance(layer, DeepCompressedLayer)
        assert (layer.nnz, layer.entries, layer.code_bits, layer.gap_bits, layer.nbytes) == (
            nnz,
            entries,
            code_bits,
            gap_bits,
            nbytes,
        )
    assert model.entries["conv.weight"].index_bits == 8
    assert model.entries["fc.weight"].index_bits == 5
    # The stored weights are the clustered inputs exactly, fillers and all.
    for name, (w, cb, codes, _r) in make_golden().dc_weights().items():
        np.testing.assert_array_equal(state[name].numpy(), np.where(w != 0, cb[codes], 0))
        assert model.entries[name].entries > model.entries[name].nnz
    assert not state["empty.weight"].any()


def test_make_golden_reproduces_the_v2_file():
    assert make_golden().golden_v2_bytes() == GOLDEN_V2.read_bytes()


def test_every_truncation_and_flip_of_golden_v2_is_detected():
    assert_cuts_and_flips_detected(GOLDEN_V2.read_bytes())


# ----------------------------------------------------------------------------- crafted records


def _fields(layer: DeepCompressedLayer) -> dict[str, object]:
    return {f: getattr(layer, f) for f in DeepCompressedLayer.__dataclass_fields__}


def _deep(layer: DeepCompressedLayer, **override: object) -> bytes:
    """A kind-4 body from the layer's fields, any of them (or ``ndim``) overridden as raw."""
    f = {**_fields(layer), "ndim": len(layer.shape)}
    f.update(override)
    return (
        struct.pack("<B", f["ndim"])
        + struct.pack(f"<{len(f['shape'])}Q", *f["shape"])
        + struct.pack(
            "<BBQQQQ",
            f["r"],
            f["index_bits"],
            f["nnz"],
            f["entries"],
            f["code_bits"],
            f["gap_bits"],
        )
        + (
            f["codebook"]
            if isinstance(f["codebook"], bytes)
            else f["codebook"].astype("<f4").tobytes()
        )
        + bytes(np.asarray(f["code_lengths"], dtype=np.uint8))
        + bytes(np.asarray(f["gap_lengths"], dtype=np.uint8))
        + f["payload"]
    )


def _file(records: list[tuple[int, bytes, bytes]], version: int = 2) -> bytes:
    out = b"\x89WLS\r\n\x1a\n" + struct.pack("<HHI", version, 0, len(records))
    for kind, name, body in records:
        out += struct.pack("<BH", kind, len(name)) + name + struct.pack("<Q", len(body)) + body
    return out + struct.pack("<I", zlib.crc32(out)) + b"WLS\x00"


def _bad_deep_cases(layer: DeepCompressedLayer) -> dict[str, bytes]:
    k, g = 1 << layer.r, 1 << layer.index_bits
    code_len = (layer.code_bits + 7) // 8
    pay = layer.payload
    flipped_lengths = layer.code_lengths.copy()
    flipped_lengths[np.argmax(flipped_lengths)] -= 1  # over-full: Kraft sum > 1
    last = int(decode_entries(layer)[1][-1])  # a tensor of `last` positions ends before it
    return {
        "r=0": _deep(layer, r=0),
        "r=9": _deep(layer, r=9, codebook=bytes(4 * 512), code_lengths=np.ones(513)),
        "index_bits=0": _deep(layer, index_bits=0),
        "index_bits=13": _deep(layer, index_bits=13, gap_lengths=np.zeros(8192)),
        "ndim 0": _deep(layer, shape=(), ndim=0),
        "dim 0": _deep(layer, shape=(0, *layer.shape[1:])),
        "numel > 2**40": _deep(layer, shape=(2**21, 2**20)),
        "nnz > entries": _deep(layer, nnz=layer.entries + 1),
        "nnz one short": _deep(layer, nnz=layer.nnz - 1),
        "entries > numel": _deep(layer, entries=layer.numel + 1, nnz=layer.numel + 1),
        "entries huge": _deep(layer, entries=2**63, nnz=2**62),
        "entries one more": _deep(layer, entries=layer.entries + 1),
        "entries one less": _deep(layer, entries=layer.entries - 1),
        "code_bits + 1": _deep(layer, code_bits=layer.code_bits + 1),
        "code_bits huge": _deep(layer, code_bits=2**64 - 1),
        "gap_bits - 8": _deep(layer, gap_bits=layer.gap_bits - 8, payload=pay[:-1]),
        "code stream + a byte": _deep(
            layer, code_bits=layer.code_bits + 8, payload=pay[:code_len] + b"\x00" + pay[code_len:]
        ),
        "payload short": _deep(layer, payload=pay[:-1]),
        "payload long": _deep(layer) + b"\x00",
        "codebook NaN": _deep(layer, codebook=struct.pack("<f", math.nan) * k),
        "code lengths Kraft": _deep(layer, code_lengths=flipped_lengths),
        "code length 33": _deep(layer, code_lengths=np.full(k + 1, 33)),
        "gap lengths all 0": _deep(layer, gap_lengths=np.zeros(g)),
        "positions past numel": _deep(layer, shape=(last,), ndim=1),
        "body cut in params": _deep(layer)[:20],
        "body cut in tables": _deep(layer)[: 1 + 8 * len(layer.shape) + 34 + 4 * k + 2],
    }


def test_bad_deep_bodies_are_malformed(dc_layers):
    layer = dc_layers["fc.weight"]
    assert layer.gap_bits % 8 and layer.fillers > 0
    for case, body in _bad_deep_cases(layer).items():
        with pytest.raises(MalformedRecordError) as info:
            ff.from_bytes(_file([(4, b"w", body)]))
            pytest.fail(case)
        assert "'w'" in str(info.value), case


def test_padding_bits_are_refused(dc_layers):
    checked = 0
    for layer in dc_layers.values():
        code_len = (layer.code_bits + 7) // 8
        for bits, last in ((layer.code_bits, code_len - 1), (layer.gap_bits, -1)):
            if bits % 8 == 0:
                continue
            bad = bytearray(layer.payload)
            bad[last] |= 1
            with pytest.raises(MalformedRecordError, match="padding"):
                ff.from_bytes(_file([(4, b"w", _deep(layer, payload=bytes(bad)))]))
            checked += 1
    assert checked >= 2


def test_damage_inside_kind_4_records_is_a_format_error(dc_layers):
    """Random changes with a recomputed CRC reach the record checks: FormatError or nothing."""
    rng = np.random.default_rng(7)
    base = _file(
        [(4, b"w", _deep(dc_layers["conv.weight"])), (4, b"v", _deep(dc_layers["fc.weight"]))]
    )
    refused = 0
    for _ in range(400):
        bad = bytearray(base[:-8])
        for i in rng.integers(16, len(bad), size=int(rng.integers(1, 4))):
            bad[i] ^= 1 << int(rng.integers(8))
        try:
            ff.from_bytes(bytes(bad) + struct.pack("<I", zlib.crc32(bad)) + b"WLS\x00")
        except FormatError:
            refused += 1
    assert refused > 300  # most damage is caught; the rest hits float data or is harmless


@pytest.mark.parametrize("cut", [1, 8, 40])
def test_cut_payloads_with_fixed_framing_are_malformed(dc_layers, cut):
    layer = dc_layers["conv.weight"]
    body = _deep(layer)[:-cut]
    with pytest.raises(MalformedRecordError):
        ff.from_bytes(_file([(4, b"w", body)]))


# ----------------------------------------------------------------------------- the document


def _ref_records(data: bytes) -> list[tuple[int, str, bytes]]:
    (count,) = struct.unpack_from("<I", data, 12)
    pos, out = 16, []
    for _ in range(count):
        kind, name_len = struct.unpack_from("<BH", data, pos)
        name = data[pos + 3 : pos + 3 + name_len].decode()
        (body_len,) = struct.unpack_from("<Q", data, pos + 3 + name_len)
        pos += 11 + name_len
        out.append((kind, name, data[pos : pos + body_len]))
        pos += body_len
    assert pos == len(data) - 8
    return out


def _ref_codes(lengths: bytes) -> dict[str, int]:
    """Bit string -> symbol, by the canonical rule of docs/format.md."""
    n = [0] * 34
    for length in lengths:
        n[length] += 1
    first = [0] * 34
    for length in range(2, 34):
        first[length] = 2 * (first[length - 1] + n[length - 1])
    out, nxt = {}, list(first)
    for symbol, length in enumerate(lengths):
        if length:
            out[format(nxt[length], f"0{length}b")] = symbol
            nxt[length] += 1
    return out


def _ref_read(stream: bytes, nbits: int, lengths: bytes, count: int) -> list[int]:
    bits = "".join(format(byte, "08b") for byte in stream)[:nbits]  # bit 7 first
    table, out, word = _ref_codes(lengths), [], ""
    for bit in bits:
        word += bit
        if word in table:
            out.append(table[word])
            word = ""
    assert word == "" and len(out) == count
    return out


def _ref_decode_deep(body: bytes) -> np.ndarray:
    ndim = body[0]
    shape = struct.unpack_from(f"<{ndim}Q", body, 1)
    pos = 1 + 8 * ndim
    r, b, nnz, entries, code_bits, gap_bits = struct.unpack_from("<BBQQQQ", body, pos)
    pos += 34
    k, g = 2**r, 2**b
    codebook = struct.unpack_from(f"<{k}f", body, pos)
    pos += 4 * k
    code_lengths, gap_lengths = body[pos : pos + k + 1], body[pos + k + 1 : pos + k + 1 + g]
    pos += k + 1 + g
    code_len = (code_bits + 7) // 8
    assert len(body) == pos + code_len + (gap_bits + 7) // 8
    codes = _ref_read(body[pos : pos + code_len], code_bits, code_lengths, entries)
    gaps = _ref_read(body[pos + code_len :], gap_bits, gap_lengths, entries)
    values = [0.0] * math.prod(shape)
    p = -1
    for c, gap in zip(codes, gaps, strict=True):
        p += 1 + gap
        if c < k:
            values[p] = codebook[c]
        else:
            assert gap == g - 1
    assert sum(c < k for c in codes) == nnz
    return np.array(values, dtype="<f4").reshape(shape)


def _ref_decode_file(data: bytes) -> dict[str, np.ndarray]:
    return {name: _ref_decode_deep(body) for kind, name, body in _ref_records(data) if kind == 4}


def test_reference_decoder_matches_the_library(mixed):
    data = ff.to_bytes(mixed)
    ref = _ref_decode_file(data)
    assert sorted(ref) == ["conv.weight", "fc.weight"]
    for name, values in ref.items():
        np.testing.assert_array_equal(values, mixed[name].decode())


def test_canonical_code_example_in_the_doc():
    assert _ref_codes(bytes([1, 3, 3, 3, 4, 4])) == {
        "0": 0,
        "100": 1,
        "101": 2,
        "110": 3,
        "1110": 4,
        "1111": 5,
    }
    doc = (ROOT / "docs" / "format.md").read_text()
    assert "lengths `(1, 3, 3, 3, 4, 4)` give the codes `0, 100, 101, 110, 1110, 1111`" in doc


def test_fixed_fields_match_the_doc(dc_layers):
    layer = dc_layers["conv.weight"]
    expected = (
        35
        + 8 * len(layer.shape)
        + 4 * 2**layer.r
        + 2**layer.r
        + 1
        + 2**layer.index_bits
        + (layer.code_bits + 7) // 8
        + (layer.gap_bits + 7) // 8
    )
    assert layer.nbytes == expected == len(_deep(layer))
