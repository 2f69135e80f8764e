"""Optional numba acceleration, with the same code running as plain Python when it is absent.

Kernels are written in the numpy subset numba compiles; without numba (or with
``WEIGHTLESS_NO_JIT=1``) they run uncompiled, which is slow but gives identical results. That
keeps one source of truth for each kernel and lets tests compare both paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

try:  # pragma: no cover - depends on the platform
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

ENABLED = _numba is not None and os.environ.get("WEIGHTLESS_NO_JIT", "") != "1"


def njit(*, parallel: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Compile with numba (cached on disk) when enabled; otherwise return the function as is."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not ENABLED:
            return fn
        return _numba.njit(cache=True, nogil=True, parallel=parallel)(fn)

    return wrap


def inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A helper called from kernels, inlined into them when compiled."""
    if not ENABLED:
        return fn
    return _numba.njit(cache=True, inline="always")(fn)


prange = _numba.prange if ENABLED else range
