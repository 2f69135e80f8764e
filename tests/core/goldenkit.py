"""Shared by the file-format tests: the script that writes the golden files, and a file's
header version read straight from its bytes (not through the reader under test)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

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
