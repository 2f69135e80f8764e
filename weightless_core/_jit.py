"""Optional numba acceleration, with the same code running as plain Python when it is absent.

Kernels are written in the numpy subset numba compiles; without numba (or with
``WEIGHTLESS_NO_JIT=1``) they run uncompiled, which is slow but gives identical results. That
keeps one source of truth for each kernel and lets tests compare both paths.

Kernels take their scalar parameters as numpy scalars of a fixed type (``np.uint64`` for hash
constants, ``np.int64`` for sizes): numba compiles one specialisation per argument type, and a
Python int above ``2**63`` would otherwise type as uint64 in one call and int64 in another.
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


def _prefetch_py(arr: Any, index: Any) -> None:
    """Uncompiled ``prefetch``: a hint only, so it does nothing."""


def _make_prefetch() -> Callable[..., None]:
    """``prefetch(arr, i)``: hint the CPU to fetch ``arr[i]`` into cache for writing.

    Only a hint (LLVM's ``llvm.prefetch``, which never faults), so results cannot depend on it;
    the construction kernels issue it a few iterations ahead to overlap their random accesses.
    """
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx: Any, arr: Any, index: Any) -> Any:
        if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            # rw = 1 (write), locality = 3 (keep in all cache levels), cache type = 1 (data)
            consts = [ir.Constant(i32, v) for v in (1, 3, 1)]
            builder.call(fn, [builder.bitcast(ptr, i8p), *consts])
            return context.get_dummy_value()

        return types.void(arr, index), codegen

    return prefetch


prefetch = _make_prefetch() if ENABLED else _prefetch_py
