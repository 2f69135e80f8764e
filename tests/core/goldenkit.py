"""Shared by the file-format tests: the script that writes the golden files, a file's header
version read straight from its bytes (not through the reader under test), and the check that
every truncation and flipped bit of a golden file is caught."""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from weightless_core import fileformat as ff
from weightless_core.errors import ChecksumMismatchError, TruncatedFileError

DATA = Path(__file__).resolve().parents[1] / "data"


def make_golden() -> ModuleType:
    """``tests/data/make_golden.py``, imported from its path (it is not a package module)."""
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header_version(data: bytes) -> int:
    return struct.unpack_from("<H", data, 8)[0]


def assert_cuts_and_flips_detected(data: bytes, *, step: int = 1, bit: int = 0x10) -> None:
    """Every ``step``-th truncation of ``data`` is a TruncatedFileError and every ``step``-th
    byte after the magic with ``bit`` flipped a ChecksumMismatchError."""
    for cut in range(0, len(data), step):
        with pytest.raises(TruncatedFileError):
            ff.from_bytes(data[:cut])
    for i in range(12, len(data), step):
        bad = bytearray(data)
        bad[i] ^= bit
        with pytest.raises(ChecksumMismatchError):
            ff.from_bytes(bytes(bad))


def read_golden(
    path: Path,
    *,
    version: int,
    sha256: str,
    arch: str,
    reference: Callable[[bytes], dict[str, np.ndarray]],
    names: Iterable[str],
) -> tuple[ff.EncodedModel, dict]:
    """The golden file at ``path`` read by the library, once its header version, digest and
    metadata are checked and every layer ``names`` decodes, by the library, to what the
    reference reader (written from docs/format.md) makes of the bytes: ``(model, state)``."""
    data = path.read_bytes()
    assert header_version(data) == version and hashlib.sha256(data).hexdigest() == sha256
    model = ff.read_model(path)
    assert model.metadata["arch"] == arch
    state = ff.load(path)
    ref = reference(data)
    assert set(ref) == set(names)
    for name, decoded in ref.items():
        np.testing.assert_array_equal(state[name].numpy(), decoded)
    return model, state
